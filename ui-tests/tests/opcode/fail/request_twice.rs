//! The `Request` can be moved into one argument only; arguments are never borrowed.

use framework::prelude::*;

#[opcode(200)]
fn twice(a: Request, b: Request) {
    let _ = (a, b);
}

#[opcode(201)]
fn borrowed(a: &Request) {
    let _ = a;
}

#[opcode(202)]
fn borrowed_mut(a: &mut Request) {
    let _ = a;
}

fn main() {}
