//! An argument that is neither an extractor nor a typed message: the error names
//! that argument's type.

use framework::prelude::*;

#[opcode(200)]
fn takes_string(ctx: Request, x: String) {
    let _ = (ctx, x);
}

#[opcode(201)]
async fn takes_socket(x: std::net::TcpStream) {
    let _ = x;
}

fn main() {}
