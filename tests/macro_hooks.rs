//! `#[on_connect]` and `#[on_disconnect]` end to end, registered through
//! `App::new().with_registered()`: they run in source order (not by name, not in
//! the registry's order), a later hook sees an earlier one's extension, the first
//! refusal answers the upgrade, and handlers see what the hooks attached. Its own
//! test binary: the `inventory` registry is global per binary.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use framework::dispatch::hooks::Query;
use framework::node::Node;
use framework::prelude::*;
use framework_tests::http::{self as raw_http, upgrade_headers};
use framework_tests::{any_port, eventually, DEADLINE};

/// Each app's record of the hook calls, in order.
#[derive(Default)]
struct Trail(Mutex<Vec<String>>);

impl Trail {
    fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[derive(Clone)]
struct User(String);

#[derive(Clone)]
struct Badge(String);

#[derive(serde::Deserialize)]
struct Params {
    token: Option<String>,
}

// The hooks, in source order. Their names sort differently (alpha < middle <
// zeta), so running them by name or in the registry's order would show.

#[on_connect]
async fn zeta_checks_the_token(
    Query(p): Query<Params>,
    State(trail): State<Trail>,
) -> Result<Extension<User>, Refusal> {
    trail.push("zeta");
    tokio::task::yield_now().await;
    match p.token {
        Some(t) if !t.is_empty() => Ok(Extension(User(t))),
        _ => Err(Refusal::unauthorized("token required")),
    }
}

#[on_connect]
fn alpha_sees_the_user(
    Extension(User(name)): Extension<User>,
    State(trail): State<Trail>,
) -> Extension<Badge> {
    trail.push("alpha");
    Extension(Badge(format!("{name}'s badge")))
}

#[on_connect]
fn middle_comes_last(State(trail): State<Trail>) {
    trail.push("middle");
}

#[on_disconnect]
async fn omega_announces(
    conn: Connection,
    node: Node,
    Extension(User(name)): Extension<User>,
    State(trail): State<Trail>,
) {
    for room in conn.channels() {
        let _ = node
            .publish(&room, format!("{name} left").as_bytes(), conn.id(), None)
            .await;
    }
    trail.push(format!("omega:{name}"));
}

#[on_disconnect]
fn beta_runs_after(State(trail): State<Trail>) {
    trail.push("beta");
}

#[opcode(200)]
fn badge(Extension(Badge(badge)): Extension<Badge>) -> Vec<u8> {
    badge.into_bytes()
}

fn trail(server: &AppHandle) -> std::sync::Arc<Trail> {
    server
        .node()
        .state()
        .get::<Trail>()
        .expect("Trail is registered")
}

async fn upgrade_status(server: &AppHandle, target: &str) -> u16 {
    let mut request = raw_http::Request::get(target);
    request.headers = upgrade_headers();
    raw_http::send(server.websocket_addr(), request)
        .await
        .status
}

#[tokio::test]
async fn macro_hooks_run_in_source_order_end_to_end() {
    let server = App::new()
        .with_state(Trail::default())
        .with_registered()
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("the registered hooks find their state");
    let trail = trail(&server);

    // The first hook refuses: the others do not run.
    assert_eq!(upgrade_status(&server, "/").await, 401);
    assert_eq!(trail.take(), ["zeta"]);

    // Accepted: all three, in source order; the handler sees the second's badge.
    let watcher = framework::client::Client::connect(&format!(
        "ws://{}/?token=watcher",
        server.websocket_addr()
    ))
    .await
    .unwrap();
    watcher.subscribe("room").await.unwrap();
    let ada =
        framework::client::Client::connect(&format!("ws://{}/?token=ada", server.websocket_addr()))
            .await
            .expect("a token is accepted");
    assert_eq!(
        trail.take(),
        ["zeta", "alpha", "middle", "zeta", "alpha", "middle"]
    );
    for _ in 0..2 {
        let reply = ada.request(200, b"").await.unwrap();
        assert_eq!(&reply.payload()[..], b"ada's badge");
    }

    // on_disconnect hooks in source order, with the session's channels and user.
    ada.subscribe("room").await.unwrap();
    ada.close();
    let d = watcher.recv_timeout(DEADLINE).await.expect("a departure");
    assert_eq!(d.channel(), Some("room"));
    assert_eq!(&d.payload()[..], b"ada left");
    assert_eq!(d.emitter_id(), Some(ada.session_id()));
    eventually("both disconnect hooks ran", DEADLINE, || trail.len() == 2).await;
    assert_eq!(trail.take(), ["omega:ada", "beta"]);
    assert_eq!(
        server
            .node()
            .metrics()
            .handshakes_refused
            .load(Ordering::SeqCst),
        1
    );
    server.shutdown().await;
}

fn added_by_hand(State(trail): State<Trail>) {
    trail.push("by hand");
}

fn added_later(State(trail): State<Trail>) {
    trail.push("later");
}

/// `App::on_connect` documents that the hooks of `#[on_connect]` run first;
/// `docs/on_connect.md` says "in source order (file, then line), then those added
/// with App::on_connect".
#[tokio::test]
async fn macro_hooks_run_before_hooks_added_with_app_on_connect() {
    let server = App::new()
        .with_state(Trail::default())
        .on_connect(added_by_hand)
        .with_registered()
        .on_connect(added_later)
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts");
    let trail = trail(&server);
    let c =
        framework::client::Client::connect(&format!("ws://{}/?token=ada", server.websocket_addr()))
            .await
            .unwrap();
    assert_eq!(
        trail.take(),
        ["zeta", "alpha", "middle", "by hand", "later"]
    );
    c.close();
    server.shutdown().await;
}
