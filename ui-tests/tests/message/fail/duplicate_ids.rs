//! Two fields with one id.

#[derive(framework::Message)]
struct Twice {
    #[fbs(id = 0)]
    a: u32,
    #[fbs(id = 0)]
    b: u32,
}

/// The implicit id of `c` (the next after `a`'s pinned 1) collides with `b`'s.
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

fn main() {}
