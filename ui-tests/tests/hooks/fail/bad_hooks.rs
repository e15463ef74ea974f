//! Hook misuse: arguments that are no handshake (or session) extractor, a
//! borrowed argument, a generic hook, and arguments to the attribute; an
//! authorizer whose return is no verdict.

use framework::prelude::*;

#[on_connect]
fn not_an_extractor(x: String) {
    let _ = x;
}

#[on_connect]
fn borrowed(headers: &http::HeaderMap) {
    let _ = headers;
}

#[on_disconnect]
fn generic<T>(conn: Connection) {
    let _ = conn;
}

#[on_disconnect(now)]
fn with_args(conn: Connection) {
    let _ = conn;
}

#[authorize]
fn returns_a_string() -> String {
    String::new()
}

#[authorize(strict)]
fn authorizer_with_args() -> bool {
    true
}

fn main() {}
