//! Built-ins only the server sends have no handler to override.

use framework::prelude::*;

#[override_opcode(Pong)]
fn pong() {}

#[override_opcode(Welcome)]
fn welcome() {}

fn main() {}
