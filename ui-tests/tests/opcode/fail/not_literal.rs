//! The opcode must be written as an integer literal.

use framework::prelude::*;

const CHAT: u16 = 200;

#[opcode(CHAT)]
fn constant() {}

#[opcode("200")]
fn string() {}

#[opcode(200 + 1)]
fn expression() {}

#[opcode]
fn missing() {}

fn main() {}
