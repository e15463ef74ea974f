//! `#[fbs]` on enums and variants: each place takes its own keys, once; names are
//! FlatBuffers identifiers, unique in the enum.

#[derive(framework::Message)]
enum Duplicate {
    #[fbs(name = "B")]
    A,
    B,
}

#[derive(framework::Message)]
#[fbs(name = "my-enum")]
enum BadNames {
    A,
    #[fbs(name = "1st")]
    B,
}

#[derive(framework::Message)]
#[fbs(id = 1, repr = "ubyte", repr = "byte")]
enum Keys {
    #[fbs(deprecated)]
    A,
}

#[derive(framework::Message)]
#[fbs(repr = "ubyte")]
struct NotAnEnum {
    a: u32,
}

fn main() {}
