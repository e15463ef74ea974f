//! A raw service takes the raw connection.

use framework::prelude::*;

#[raw_ws(port = 8082)]
fn wrong_argument(x: String) {
    let _ = x;
}

fn main() {}
