//! A frame carries one payload, so a handler takes at most one typed message: the
//! error points at the second.

use framework::prelude::*;

#[derive(framework::Message)]
struct First {
    a: u32,
}

#[derive(framework::Message)]
struct Second {
    b: u32,
}

#[opcode(200)]
fn two(first: First, trace: framework::dispatch::Trace, second: Second) {
    let _ = (first.a, trace, second.b);
}

fn main() {}
