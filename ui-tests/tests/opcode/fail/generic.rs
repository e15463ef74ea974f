//! A handler is one concrete function.

use framework::prelude::*;

#[opcode(200)]
fn generic<T: Default>() -> Vec<u8> {
    let _ = T::default();
    Vec::new()
}

#[opcode(201)]
fn const_generic<const N: usize>() {}

fn main() {}
