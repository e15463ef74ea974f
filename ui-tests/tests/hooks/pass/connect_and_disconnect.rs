//! `#[on_connect]` and `#[on_disconnect]`, sync and async, with every extractor
//! and every kind of return.

use framework::dispatch::hooks::{PeerAddr, Query, Refusal};
use framework::dispatch::{Extension, State};
use framework::node::Node;
use framework::prelude::*;

#[derive(Clone)]
struct User(String);

struct Config(&'static str);

#[derive(serde::Deserialize)]
struct Params {
    token: Option<String>,
}

#[on_connect]
fn accept_all() {}

#[on_connect]
async fn authenticate(
    headers: http::HeaderMap,
    uri: http::Uri,
    PeerAddr(peer): PeerAddr,
    Query(params): Query<Params>,
    node: Node,
    State(config): State<Config>,
) -> Result<Extension<User>, Refusal> {
    let _ = (headers.len(), uri.path(), peer.port(), node.node_id(), config.0);
    match params.token {
        Some(t) => Ok(Extension(User(t))),
        None => Err(Refusal::unauthorized("no token")),
    }
}

#[on_connect]
fn after(Extension(user): Extension<User>, maybe: Option<Extension<u32>>) -> Result<(), Refusal> {
    let _ = (user.0, maybe);
    Ok(())
}

#[on_disconnect]
fn bye(conn: Connection) {
    let _ = conn.id();
}

#[on_disconnect]
async fn announce(conn: Connection, node: Node, user: Option<Extension<User>>, State(c): State<Config>) {
    let _ = (conn.channels(), node.node_id(), user.map(|Extension(u)| u.0), c.0);
}

fn main() {
    let _ = App::new().with_registered().with_state(Config("x"));
}
