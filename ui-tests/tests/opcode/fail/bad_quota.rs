//! `quota = ".."` is checked when the macro expands: a rate that does not parse,
//! a value that is no string, and an unknown option are errors at their tokens.

use framework::prelude::*;

#[opcode(200, quota = "ten per second")]
fn words() {}

#[opcode(201, quota = 10)]
fn number() {}

#[opcode(202, limit = "10/s")]
fn unknown() {}

fn main() {}
