//! Opcodes are 16-bit.

use framework::prelude::*;

#[opcode(65536)]
fn just_above() {}

#[opcode(100000000000)]
fn far_above() {}

fn main() {}
