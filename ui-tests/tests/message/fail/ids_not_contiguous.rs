//! flatc requires explicit ids to be exactly 0..n-1.

#[derive(framework::Message)]
struct Gap {
    a: u32,
    #[fbs(id = 5)]
    b: u32,
}

fn main() {}
