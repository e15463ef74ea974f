//! The attribute goes on a function.

use framework::prelude::*;

#[opcode(200)]
struct NotAFunction;

fn main() {}
