//! A Rust union has no FlatBuffers counterpart (a FlatBuffers union is an enum
//! of tables: see `union_members.rs`).

#[derive(framework::Message)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
