//! The attribute takes exactly one name.

use framework::prelude::*;

#[override_opcode]
fn nothing() {}

#[override_opcode(Ping, Subscribe)]
fn two() {}

#[override_opcode(1)]
fn number() {}

fn main() {}
