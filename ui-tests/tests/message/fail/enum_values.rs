//! A fieldless enum's values: literals (the schema needs them) that fit its type.

const FIVE: isize = 5;

#[derive(framework::Message)]
enum NotLiteral {
    A = FIVE,
    B,
}

#[derive(framework::Message)]
#[fbs(repr = "ubyte")]
enum TooBig {
    A,
    B = 300,
}

/// `B` is 128 implicitly.
#[derive(framework::Message)]
#[fbs(repr = "byte")]
enum Implicit {
    A = 127,
    B,
}

#[derive(framework::Message)]
#[fbs(repr = "uint8")]
enum UnknownType {
    A,
}

#[derive(framework::Message)]
#[repr(u8)]
#[fbs(repr = "ushort")]
enum Disagree {
    A,
}

fn main() {}
