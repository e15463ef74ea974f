//! A misspelled built-in: the error lists the accepted names.

use framework::prelude::*;

#[override_opcode(Pnig)]
fn ping() {}

fn main() {
    // On error the item is still emitted: the name resolves.
    ping();
}
