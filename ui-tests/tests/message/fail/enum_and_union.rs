//! A FlatBuffers table is a struct with named fields.

#[derive(framework::Message)]
enum Choice {
    A,
    B,
}

#[derive(framework::Message)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
