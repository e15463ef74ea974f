//! The request is moved into a handler once.

use framework::prelude::*;

#[opcode(200)]
fn twice(a: Request, b: Request) {
    let _ = (a, b);
}

#[opcode(201)]
fn value_and_ref(a: Request, b: &Request) {
    let _ = (a, b);
}

fn main() {}
