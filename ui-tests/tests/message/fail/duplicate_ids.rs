//! Two fields with one id.

#[derive(framework::Message)]
struct Twice {
    #[fbs(id = 0)]
    a: u32,
    #[fbs(id = 0)]
    b: u32,
}

/// The implicit id of `d` (the next after `c`'s pinned 0) collides with `a`'s.
#[derive(framework::Message)]
struct Implicit {
    #[fbs(id = 1)]
    a: u32,
    #[fbs(id = 2)]
    b: u32,
    #[fbs(id = 0)]
    c: u32,
    d: u32,
}

#[derive(framework::Message)]
struct Table {
    x: u32,
}

#[derive(framework::Message)]
enum Shape {
    Table(Table),
}

/// A union's type takes the id before its value's: here `a`'s.
#[derive(framework::Message)]
struct UnionType {
    a: u32,
    #[fbs(union, id = 1)]
    shape: Shape,
}

fn main() {}
