//! Handlers defined in a library crate. A binary that links this crate (e.g. with
//! `use framework_test_handlers as _;`) serves opcode 900 without naming it.

use framework::prelude::*;

/// Opcode 900: answers "from the library".
#[opcode(900)]
pub fn from_library() -> Vec<u8> {
    b"from the library".to_vec()
}
