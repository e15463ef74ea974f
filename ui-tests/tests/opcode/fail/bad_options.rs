//! `quota = ".."` and `auth = ".."` are checked when the macro expands: a value that does not parse,
//! a value that is no string, and an unknown option are errors at their tokens.

use framework::prelude::*;

#[opcode(200, quota = "ten per second")]
fn words() {}

#[opcode(201, quota = 10)]
fn number() {}

#[opcode(202, limit = "10/s")]
fn unknown() {}

#[opcode(203, auth = "admins")]
fn bad_grant() {}

#[opcode(204, auth, auth)]
fn twice() {}

fn main() {}
