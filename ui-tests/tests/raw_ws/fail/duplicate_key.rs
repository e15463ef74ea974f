//! A key given twice.

use framework::prelude::*;

#[raw_ws(port = 1, port = 2)]
fn twice(_conn: RawConnection) {}

fn main() {}
