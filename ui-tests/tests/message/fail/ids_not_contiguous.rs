//! flatc requires the ids of n fields to be exactly 0..n. An id out of range is
//! reported at the `#[fbs(id)]` it comes from.

#[derive(framework::Message)]
struct Gap {
    a: u32,
    #[fbs(id = 5)]
    b: u32,
}

/// `b` is numbered after `a`'s pinned 1: the pin is the culprit.
#[derive(framework::Message)]
struct PushedOut {
    #[fbs(id = 1)]
    a: u32,
    b: u32,
}

/// The pin itself and the fields after it, in one error.
#[derive(framework::Message)]
struct Several {
    #[fbs(id = 4)]
    a: u32,
    b: u32,
    c: u32,
}

fn main() {}
