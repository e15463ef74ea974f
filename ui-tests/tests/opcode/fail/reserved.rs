//! Opcodes below 200 belong to the framework.

use framework::prelude::*;

#[opcode(199)]
fn just_below() {}

#[opcode(0)]
fn zero() {}

fn main() {
    // On error the item is still emitted: these names resolve.
    just_below();
    zero();
}
