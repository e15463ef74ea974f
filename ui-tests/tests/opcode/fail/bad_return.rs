//! A return type that cannot become a reply.

use framework::prelude::*;

#[opcode(200)]
fn returns_string() -> String {
    String::new()
}

fn main() {}
