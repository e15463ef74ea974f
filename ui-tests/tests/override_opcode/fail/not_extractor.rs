//! Arguments follow the same rules as for `#[opcode]`.

use framework::prelude::*;

#[override_opcode(Ping)]
fn ping(x: String) {
    let _ = x;
}

fn main() {}
