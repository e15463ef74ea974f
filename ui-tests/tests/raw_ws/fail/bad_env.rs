//! `env` names an environment variable with a string literal.

use framework::prelude::*;

const VAR: &str = "PORT";

#[raw_ws(port = 8082, env = VAR)]
fn constant(_conn: RawConnection) {}

#[raw_ws(port = 8082, env = "A", env = "B")]
fn twice(_conn: RawConnection) {}

fn main() {}
