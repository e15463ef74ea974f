//! The port is an integer literal in 0..=65535 with a value.

use framework::prelude::*;

#[raw_ws(port = 65536)]
fn too_large(_conn: RawConnection) {}

const PORT: u16 = 8082;

#[raw_ws(port = PORT)]
fn constant(_conn: RawConnection) {}

#[raw_ws(port)]
fn no_value(_conn: RawConnection) {}

fn main() {}
