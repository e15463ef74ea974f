//! Handlers are free functions, not methods.

use framework::prelude::*;

struct Service;

impl Service {
    #[opcode(200)]
    fn handle(&self) {}
}

fn main() {
    Service.handle();
}
