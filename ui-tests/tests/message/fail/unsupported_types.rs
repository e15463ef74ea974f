//! Unsupported field types, each reported at its field, all at once.

use std::collections::HashMap;

#[derive(framework::Message)]
struct Bad {
    ok: u32,
    map: HashMap<String, u32>,
    size: usize,
    name: &'static str,
    pair: (u8, u8),
    array: [u8; 4],
    boxed: Box<u32>,
    wide: u128,
    letter: char,
    maybe_maybe: Option<Option<u8>>,
}

fn main() {}
