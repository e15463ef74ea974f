//! An unknown key: the error lists the valid ones.

use framework::prelude::*;

#[raw_ws(port = 8082, path = "/raw")]
fn unknown(_conn: RawConnection) {}

#[raw_ws(prot = 8082)]
fn misspelled(_conn: RawConnection) {}

fn main() {}
