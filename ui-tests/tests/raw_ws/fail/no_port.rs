//! The port is required.

use framework::prelude::*;

#[raw_ws]
fn bare(_conn: RawConnection) {}

#[raw_ws()]
fn empty(_conn: RawConnection) {}

fn main() {
    // On error the item is still emitted: these names resolve.
    let _ = (bare, empty);
}
