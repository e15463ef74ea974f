//! Every error of one item is reported at once: a reserved opcode with a generic
//! function, and a reserved opcode with an argument that is not an extractor (the
//! function's type checks are still emitted when the attribute is wrong).

use framework::prelude::*;

#[opcode(5)]
fn generic<T>(x: T) {
    let _ = x;
}

#[opcode(5)]
fn takes_string(x: String) {
    let _ = x;
}

fn main() {}
