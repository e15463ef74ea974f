//! `App::on_connect` / `App::on_disconnect` over real sockets, on both
//! `run_websocket_service` and `run_service` (every test runs on each): a hook
//! refuses the upgrade with its own HTTP status before any WebSocket exists, or
//! attaches values that handlers read on every later frame; hooks run in order and
//! the first refusal wins; async, panicking and too slow hooks; `on_disconnect`
//! once per session however it ends (client close, dropped TCP, idle timeout,
//! shutdown), seeing the session's channels and extensions, contained when it
//! panics; no hooks for raw services; extensions written by handlers; hook errors
//! mapped to HTTP statuses; every `Origin` header of an upgrade is checked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use framework::client::{Client, ClientError};
use framework::dispatch::hooks::{PeerAddr, Query, Refusal};
use framework::dispatch::{Body, Extension, State};
use framework::node::Node;
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::raw::RawConnection;
use framework::session::Connection;
use framework::{App, AppHandle, Config, HandlerError};
use framework_tests::http::{self as raw_http, upgrade_headers};
use framework_tests::{any_port, eventually, expect_server_error, Ending, RawWs, DEADLINE};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

/// The two services that speak the protocol; hooks behave the same on both.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `run_websocket_service`: every path upgrades.
    WebSocket,
    /// `run_service`: HTTP routes, the protocol on `/ws`.
    Service,
}

impl Kind {
    async fn start(self, app: App) -> AppHandle {
        let app = match self {
            Kind::WebSocket => app.run_websocket_service(any_port()),
            Kind::Service => app.run_service(any_port()),
        };
        app.start().await.expect("server starts")
    }

    fn addr(self, server: &AppHandle) -> SocketAddr {
        match self {
            Kind::WebSocket => server.websocket_addr(),
            Kind::Service => server.service_addr(),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::WebSocket => "/",
            Kind::Service => "/ws",
        }
    }

    /// The protocol URL, with `query` (e.g. `?token=...`) appended.
    fn url(self, server: &AppHandle, query: &str) -> String {
        format!("ws://{}{}{query}", self.addr(server), self.path())
    }

    /// A raw HTTP upgrade request to the protocol path with `query` and `headers`,
    /// answered with its status (101 when accepted).
    async fn upgrade(
        self,
        server: &AppHandle,
        query: &str,
        headers: &[(&str, &str)],
    ) -> raw_http::Response {
        let target = format!("{}{query}", self.path());
        let mut request = raw_http::Request::get(&target);
        request.headers = upgrade_headers();
        request.headers.extend_from_slice(headers);
        raw_http::send(self.addr(server), request).await
    }
}

/// Runs each named `async fn(Kind)` as one test per service.
macro_rules! on_both_services {
    ($($name:ident),* $(,)?) => {
        mod websocket_service {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Kind::WebSocket).await
                }
            )*
        }
        mod run_service {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Kind::Service).await
                }
            )*
        }
    };
}

on_both_services!(
    a_hook_refuses_with_its_status_or_attaches_what_handlers_see,
    async_panicking_and_too_slow_hooks,
    on_disconnect_runs_once_per_session_and_sees_channels_and_extensions,
    handlers_write_extensions_that_later_frames_and_on_disconnect_read,
    every_origin_header_is_checked_before_the_hooks,
    hook_errors_become_http_statuses,
    on_disconnect_runs_for_a_session_the_server_closes,
);

#[derive(Debug, Clone, PartialEq)]
struct User {
    name: String,
}

#[derive(Debug, Clone)]
struct Greeting(String);

#[derive(serde::Deserialize)]
struct Params {
    token: Option<String>,
}

/// What the hooks saw.
#[derive(Default)]
struct Log {
    troubled: AtomicU64,
    hanging: AtomicU64,
    authenticate: AtomicU64,
    greet: AtomicU64,
    /// One entry per `on_disconnect` call: session, user, joined channels.
    disconnects: Mutex<Vec<(Uuid, String, Vec<String>)>>,
}

impl Log {
    fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
    fn disconnects(&self) -> Vec<(Uuid, String, Vec<String>)> {
        self.disconnects.lock().unwrap().clone()
    }
}

/// Never notified: what a hook waiting for an unreachable backend waits on.
struct Never(Notify);

/// First hook: panics or hangs when the request asks for it (`x-panic`,
/// `x-hang`), otherwise accepts.
async fn trouble(headers: HeaderMap, State(log): State<Log>, State(never): State<Never>) {
    log.troubled.fetch_add(1, Ordering::SeqCst);
    if headers.contains_key("x-panic") {
        panic!("on_connect hook exploded with secret detail");
    }
    if headers.contains_key("x-hang") {
        log.hanging.fetch_add(1, Ordering::SeqCst);
        never.0.notified().await;
    }
}

/// Second hook, async: a token from the query (`?token=user-NAME`) or the
/// `x-token` header; none or a wrong one is 401.
async fn authenticate(
    Query(params): Query<Params>,
    headers: HeaderMap,
    State(log): State<Log>,
) -> Result<Extension<User>, Refusal> {
    log.authenticate.fetch_add(1, Ordering::SeqCst);
    // A lookup that awaits.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let token = params.token.or_else(|| {
        headers
            .get("x-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    match token.as_deref().and_then(|t| t.strip_prefix("user-")) {
        Some(name) => Ok(Extension(User { name: name.into() })),
        None => Err(Refusal::unauthorized("a token is required")),
    }
}

/// Third hook, sync: sees the second hook's extension.
fn greet(
    Extension(user): Extension<User>,
    PeerAddr(peer): PeerAddr,
    uri: Uri,
    State(log): State<Log>,
) -> Extension<Greeting> {
    log.greet.fetch_add(1, Ordering::SeqCst);
    Extension(Greeting(format!(
        "hello {} from {} via {}",
        user.name,
        peer.ip(),
        uri.path()
    )))
}

fn whoami(Extension(user): Extension<User>, Extension(greeting): Extension<Greeting>) -> Vec<u8> {
    format!("{}|{}", user.name, greeting.0).into_bytes()
}

/// Announces the leaving user in every channel it joined, then logs the call.
async fn announce_departure(
    conn: Connection,
    node: Node,
    Extension(user): Extension<User>,
    State(log): State<Log>,
) {
    let mut channels = conn.channels();
    channels.sort();
    for room in &channels {
        let text = format!("{} left", user.name);
        let _ = node.publish(room, text.as_bytes(), conn.id(), None).await;
    }
    log.disconnects
        .lock()
        .unwrap()
        .push((conn.id(), user.name, channels));
}

fn app(config: Config) -> App {
    App::new()
        .config(config)
        .with_state(Log::default())
        .with_state(Never(Notify::new()))
        .on_connect(trouble)
        .on_connect(authenticate)
        .on_connect(greet)
        .on_disconnect(announce_departure)
        .register_custom_handler(200, whoami)
}

fn log(server: &AppHandle) -> Arc<Log> {
    server
        .node()
        .state()
        .get::<Log>()
        .expect("Log is registered")
}

fn refused(server: &AppHandle) -> u64 {
    server
        .node()
        .metrics()
        .handshakes_refused
        .load(Ordering::SeqCst)
}

/// Connects with extra headers.
async fn connect_with(url: &str, headers: &[(&'static str, &str)]) -> Result<Client, ClientError> {
    let mut request = url.into_client_request().expect("valid url");
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).expect("header value"));
    }
    Client::connect_request(request).await
}

async fn whoami_of(c: &Client) -> String {
    let reply = c.request(200, b"").await.expect("whoami answers");
    String::from_utf8_lossy(&reply.payload()).into_owned()
}

async fn a_hook_refuses_with_its_status_or_attaches_what_handlers_see(kind: Kind) {
    let server = kind.start(app(Config::default())).await;
    let log = log(&server);

    // No token: the upgrade is answered 401 with the hook's body, no WebSocket.
    let r = kind.upgrade(&server, "", &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.text(), "a token is required");
    assert!(r.header("sec-websocket-accept").is_none());
    // A token that is not valid, in the query or in the header.
    assert_eq!(kind.upgrade(&server, "?token=nope", &[]).await.status, 401);
    assert_eq!(
        kind.upgrade(&server, "", &[("x-token", "nope")])
            .await
            .status,
        401
    );
    assert_eq!(
        refused(&server),
        3,
        "handshakes_refused counts each refusal"
    );
    assert_eq!(Log::count(&log.authenticate), 3);
    assert_eq!(
        Log::count(&log.greet),
        0,
        "the first refusal wins: later hooks are not called"
    );
    assert_eq!(
        server
            .node()
            .metrics()
            .sessions_opened
            .load(Ordering::SeqCst),
        0
    );
    // Refused through the client too.
    match Client::connect(&kind.url(&server, "")).await {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        other => panic!(
            "expected a 401 refusal, got {:?}",
            other.map(|c| c.session_id())
        ),
    }

    // A token in the query: accepted, and every later frame sees both extensions.
    let alice = Client::connect(&kind.url(&server, "?token=user-alice"))
        .await
        .expect("a valid token is accepted");
    let expected = format!("alice|hello alice from 127.0.0.1 via {}", kind.path());
    for _ in 0..3 {
        assert_eq!(whoami_of(&alice).await, expected);
    }
    // A token in a header.
    let bob = connect_with(&kind.url(&server, ""), &[("x-token", "user-bob")])
        .await
        .expect("a valid header token is accepted");
    assert!(whoami_of(&bob).await.starts_with("bob|hello bob from "));
    // Each connection has its own values.
    assert_eq!(whoami_of(&alice).await, expected);
    assert_eq!(Log::count(&log.greet), 2);
    assert_eq!(refused(&server), 4);
    server.shutdown().await;
}

async fn async_panicking_and_too_slow_hooks(kind: Kind) {
    let server = kind
        .start(app(Config {
            handshake_timeout: Duration::from_millis(500),
            ..Config::default()
        }))
        .await;
    let log = log(&server);

    // A panicking hook refuses with 500 and a generic body.
    let r = kind
        .upgrade(&server, "?token=user-x", &[("x-panic", "1")])
        .await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(!r.text().contains("secret"), "no leak: {:?}", r.text());
    assert_eq!(Log::count(&log.authenticate), 0, "later hooks do not run");

    // A hook that never finishes: the upgrade is answered 503 at the handshake
    // timeout, and meanwhile the server serves others.
    let addr = kind.addr(&server);
    let path = kind.path();
    let hung = tokio::spawn(async move {
        let target = format!("{path}?token=user-slow");
        let mut request = raw_http::Request::get(&target);
        request.headers = upgrade_headers();
        request.headers.push(("x-hang", "1"));
        raw_http::send(addr, request).await
    });
    eventually("the hook is hanging", DEADLINE, || {
        Log::count(&log.hanging) == 1
    })
    .await;
    let carol = Client::connect(&kind.url(&server, "?token=user-carol"))
        .await
        .expect("served while another hook hangs");
    assert!(whoami_of(&carol).await.starts_with("carol|"));
    let r = hung.await.expect("the hung request task");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(refused(&server), 2);

    // And after both, the server still serves.
    let dave = Client::connect(&kind.url(&server, "?token=user-dave"))
        .await
        .expect("served after a panic and a timeout");
    assert!(whoami_of(&dave).await.starts_with("dave|"));
    carol.ping().await.unwrap();
    server.shutdown().await;
}

/// Opens a protocol connection over a raw socket with `query`, consuming Welcome;
/// returns it with its session id.
async fn raw_connect(kind: Kind, server: &AppHandle, query: &str) -> (RawWs, Uuid) {
    let (ws, _) = tokio_tungstenite::connect_async(kind.url(server, query))
        .await
        .expect("raw connect");
    let mut raw = RawWs { ws };
    let welcome = raw.next_frame().await.expect("welcome");
    assert_eq!(welcome.opcode(), Opcode::Welcome.0);
    let id = welcome.receiver_id().expect("Welcome names the session");
    (raw, id)
}

/// The next delivery on `c`'s channel `channel`, as text.
async fn next_in(c: &Client, channel: &str) -> (String, Option<Uuid>) {
    let d = c
        .recv_timeout(DEADLINE)
        .await
        .unwrap_or_else(|| panic!("a delivery in {channel}"));
    assert_eq!(d.opcode(), Opcode::Publish.0, "{d:?}");
    assert_eq!(d.channel(), Some(channel));
    (
        String::from_utf8_lossy(&d.payload()).into_owned(),
        d.emitter_id(),
    )
}

async fn on_disconnect_runs_once_per_session_and_sees_channels_and_extensions(kind: Kind) {
    let server = kind.start(app(Config::default())).await;
    let log = log(&server);
    let watcher = Client::connect(&kind.url(&server, "?token=user-watcher"))
        .await
        .unwrap();
    watcher.subscribe("room").await.unwrap();

    // The client closes.
    let alice = Client::connect(&kind.url(&server, "?token=user-alice"))
        .await
        .unwrap();
    alice.subscribe("room").await.unwrap();
    alice.subscribe("elsewhere").await.unwrap();
    let alice_id = alice.session_id();
    alice.close();
    assert_eq!(
        next_in(&watcher, "room").await,
        ("alice left".to_string(), Some(alice_id))
    );

    // The TCP connection drops without a close frame.
    let (mut bob, bob_id) = raw_connect(kind, &server, "?token=user-bob").await;
    let ack = bob
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("room")
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    bob.reset_on_drop();
    drop(bob);
    assert_eq!(
        next_in(&watcher, "room").await,
        ("bob left".to_string(), Some(bob_id))
    );

    // The server shuts down with sessions open.
    let carol = Client::connect(&kind.url(&server, "?token=user-carol"))
        .await
        .unwrap();
    carol.subscribe("room").await.unwrap();
    let (carol_id, watcher_id) = (carol.session_id(), watcher.session_id());
    eventually("alice's and bob's hooks logged", DEADLINE, || {
        log.disconnects().len() == 2
    })
    .await;
    server.shutdown().await;

    // Once per session, each with its user and its channels.
    let mut seen = log.disconnects();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let expected = vec![
        (
            alice_id,
            "alice".to_string(),
            vec!["elsewhere".to_string(), "room".to_string()],
        ),
        (bob_id, "bob".to_string(), vec!["room".to_string()]),
        (carol_id, "carol".to_string(), vec!["room".to_string()]),
        (watcher_id, "watcher".to_string(), vec!["room".to_string()]),
    ];
    assert_eq!(seen, expected);
    // A refused connection never had a session: no hook for it.
    drop((carol, watcher));
}

#[derive(Debug, Clone)]
struct Nick(String);

/// Attaches the body as the connection's nick.
fn set_nick(conn: Connection, Body(body): Body) {
    conn.insert_extension(Nick(String::from_utf8_lossy(&body).into_owned()));
}

/// The nick, if one was set: `None` is an empty response.
fn nick(nick: Option<Extension<Nick>>) -> Option<Vec<u8>> {
    nick.map(|Extension(n)| n.0.into_bytes())
}

fn required_nick(Extension(nick): Extension<Nick>) -> Vec<u8> {
    nick.0.into_bytes()
}

/// Records the nick a handler attached; skipped for sessions without one.
fn nick_on_disconnect(conn: Connection, Extension(nick): Extension<Nick>, State(log): State<Log>) {
    log.disconnects
        .lock()
        .unwrap()
        .push((conn.id(), nick.0, Vec::new()));
}

async fn handlers_write_extensions_that_later_frames_and_on_disconnect_read(kind: Kind) {
    let server = kind
        .start(
            App::new()
                .with_state(Log::default())
                .on_disconnect(nick_on_disconnect)
                .register_custom_handler(201, set_nick)
                .register_custom_handler(202, nick)
                .register_custom_handler(203, required_nick),
        )
        .await;
    let log = log(&server);
    let url = kind.url(&server, "");
    let (ada, other) = (
        Client::connect(&url).await.unwrap(),
        Client::connect(&url).await.unwrap(),
    );

    // Before: absent (Option → empty response; required → Internal).
    assert!(!ada.request(202, b"").await.unwrap().has_payload());
    expect_server_error(ada.request(203, b"").await, ErrorCode::Internal);

    // One request attaches it, the next ones read it.
    ada.request(201, b"ada").await.unwrap();
    assert_eq!(&ada.request(202, b"").await.unwrap().payload()[..], b"ada");
    assert_eq!(&ada.request(203, b"").await.unwrap().payload()[..], b"ada");
    // Replaced by a later request.
    ada.request(201, b"countess").await.unwrap();
    assert_eq!(
        &ada.request(203, b"").await.unwrap().payload()[..],
        b"countess"
    );
    // Another connection has its own extensions.
    assert!(!other.request(202, b"").await.unwrap().has_payload());

    // on_disconnect reads it; the session without one is skipped.
    let (ada_id, other_id) = (ada.session_id(), other.session_id());
    ada.close();
    other.close();
    eventually("both sessions closed", DEADLINE, || {
        server
            .node()
            .metrics()
            .sessions_closed
            .load(Ordering::SeqCst)
            == 2
    })
    .await;
    assert_eq!(
        log.disconnects(),
        vec![(ada_id, "countess".to_string(), Vec::new())],
        "the hook ran for {ada_id} only, not for {other_id}"
    );
    server.shutdown().await;
}

async fn every_origin_header_is_checked_before_the_hooks(kind: Kind) {
    let server = kind
        .start(app(Config {
            allowed_origins: vec!["https://good.example".into()],
            ..Config::default()
        }))
        .await;
    let log = log(&server);
    let upgrade = |origins: &'static [&'static str]| {
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> = origins.iter().map(|o| ("Origin", *o)).collect();
            kind.upgrade(server, "?token=user-o", &headers).await.status
        }
    };
    assert_eq!(upgrade(&["https://good.example"]).await, 101);
    assert_eq!(
        upgrade(&["https://good.example", "https://evil.example"]).await,
        403,
        "a second, refused Origin cannot ride along"
    );
    assert_eq!(
        upgrade(&["https://evil.example", "https://good.example"]).await,
        403
    );
    assert_eq!(upgrade(&["https://evil.example"]).await, 403);
    assert_eq!(refused(&server), 3);
    assert_eq!(
        Log::count(&log.troubled),
        1,
        "hooks run only for the admitted upgrade"
    );
    server.shutdown().await;
}

/// A raw service next to a protocol service with hooks: the hooks never run for
/// raw connections (the protocol service's hooks are active meanwhile).
#[tokio::test]
async fn hooks_do_not_run_for_raw_websocket_services() {
    let server = app(Config::default())
        .run_websocket_service(any_port())
        .run_raw_websocket_service(any_port(), |conn: RawConnection| async move {
            while let Some(m) = conn.recv().await {
                let _ = conn.send(m.data().to_ascii_uppercase());
            }
        })
        .start()
        .await
        .expect("server starts");
    let log = log(&server);

    // No token, yet the raw service upgrades and serves.
    let (mut raw, _) = tokio_tungstenite::connect_async(format!("ws://{}/", server.raw_addrs()[0]))
        .await
        .expect("a raw connection needs no token");
    use futures_util::SinkExt;
    raw.send(WsMessage::Binary(Bytes::from_static(b"quiet")))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(DEADLINE, raw.next())
        .await
        .expect("an echo in time")
        .expect("an echo")
        .expect("an echo");
    assert_eq!(echoed.into_data(), Bytes::from_static(b"QUIET"));
    raw.close(None).await.unwrap();
    eventually("the raw session closed", DEADLINE, || {
        server
            .node()
            .metrics()
            .sessions_closed
            .load(Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(Log::count(&log.troubled), 0, "no on_connect for raw");

    // The protocol service runs them.
    let kind = Kind::WebSocket;
    assert_eq!(kind.upgrade(&server, "", &[]).await.status, 401);
    let c = Client::connect(&kind.url(&server, "?token=user-p"))
        .await
        .unwrap();
    let id = c.session_id();
    c.close();
    eventually("the protocol session's hook ran", DEADLINE, || {
        !log.disconnects().is_empty()
    })
    .await;
    assert_eq!(Log::count(&log.troubled), 2);
    let ids: Vec<Uuid> = log.disconnects().iter().map(|d| d.0).collect();
    assert_eq!(
        ids,
        vec![id],
        "on_disconnect ran for the protocol session only"
    );
    server.shutdown().await;
}

/// A hook failing with a `HandlerError`: its code picks the status.
fn coded(headers: HeaderMap) -> Result<(), HandlerError> {
    let code = headers.get("x-code").and_then(|v| v.to_str().ok());
    match code {
        None => Ok(()),
        Some("unauthorized") => Err(HandlerError::new(ErrorCode::Unauthorized, "nope")),
        Some("forbidden") => Err(HandlerError::new(ErrorCode::Forbidden, "nope")),
        Some("rate") => Err(HandlerError::rate_limited(1000)),
        Some("invalid") => Err(HandlerError::invalid_argument("nope")),
        Some("bad-payload") => Err(HandlerError::bad_payload("nope")),
        Some("unavailable") => Err(HandlerError::new(ErrorCode::Unavailable, "nope")),
        Some(_) => Err(HandlerError::not_found("nope")),
    }
}

/// A hook failing with a bare status.
fn teapot(headers: HeaderMap) -> Result<(), StatusCode> {
    if headers.contains_key("x-teapot") {
        return Err(StatusCode::IM_A_TEAPOT);
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Strict {
    #[allow(dead_code)]
    n: Option<u32>,
}

/// A hook whose query must deserialize.
fn strict(Query(_): Query<Strict>) {}

async fn hook_errors_become_http_statuses(kind: Kind) {
    let server = kind
        .start(
            App::new()
                .on_connect(coded)
                .on_connect(teapot)
                .on_connect(strict),
        )
        .await;
    let cases = [
        ("unauthorized", 401, "nope"),
        ("forbidden", 403, "nope"),
        ("rate", 429, "rate limited"),
        ("invalid", 400, "nope"),
        ("bad-payload", 400, "nope"),
        ("unavailable", 503, "nope"),
        ("not-found", 500, "nope"),
    ];
    for (code, status, body) in cases {
        let r = kind.upgrade(&server, "", &[("x-code", code)]).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (status, body),
            "x-code {code}"
        );
    }
    let r = kind.upgrade(&server, "", &[("x-teapot", "1")]).await;
    assert_eq!((r.status, r.text().as_str()), (418, "I'm a teapot"));
    let r = kind.upgrade(&server, "?n=abc", &[]).await;
    assert_eq!(r.status, 400, "a query that does not deserialize: {r:?}");
    assert!(r.text().starts_with("bad query string"), "{:?}", r.text());
    assert_eq!(kind.upgrade(&server, "?n=5", &[]).await.status, 101);
    assert_eq!(kind.upgrade(&server, "", &[]).await.status, 101);
    assert_eq!(refused(&server), cases.len() as u64 + 2);
    server.shutdown().await;
}

async fn on_disconnect_runs_for_a_session_the_server_closes(kind: Kind) {
    let server = kind
        .start(app(Config {
            idle_timeout: Duration::from_millis(300),
            ..Config::default()
        }))
        .await;
    let log = log(&server);
    // A client that never sends anything is closed by the server.
    let (mut idle, id) = raw_connect(kind, &server, "?token=user-idle").await;
    let ending = idle.drain(DEADLINE).await;
    assert_ne!(ending, Ending::TimedOut, "the idle session was closed");
    eventually("the hook ran for the idle session", DEADLINE, || {
        !log.disconnects().is_empty()
    })
    .await;
    assert_eq!(
        log.disconnects(),
        vec![(id, "idle".to_string(), Vec::new())]
    );
    server.shutdown().await;
}

fn panics_on_disconnect(conn: Connection) {
    if !conn.id().is_nil() {
        panic!("on_disconnect hook exploded");
    }
}

fn counts_on_disconnect(conn: Connection, State(log): State<Log>) {
    log.disconnects
        .lock()
        .unwrap()
        .push((conn.id(), String::new(), conn.channels()));
}

/// A panicking `on_disconnect` hook is contained: the next hook runs and the
/// session is cleaned up (unregistered, its channels left).
#[tokio::test]
async fn a_panicking_on_disconnect_hook_does_not_stop_the_next_one_or_the_cleanup() {
    let server = Kind::WebSocket
        .start(
            App::new()
                .with_state(Log::default())
                .on_disconnect(panics_on_disconnect)
                .on_disconnect(counts_on_disconnect),
        )
        .await;
    let log = log(&server);
    let url = Kind::WebSocket.url(&server, "");
    let c = Client::connect(&url).await.unwrap();
    c.subscribe("room").await.unwrap();
    let id = c.session_id();
    c.close();
    eventually("the session is cleaned up", DEADLINE, || {
        server
            .node()
            .metrics()
            .sessions_closed
            .load(Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(
        log.disconnects(),
        vec![(id, String::new(), vec!["room".to_string()])]
    );
    assert_eq!(server.node().hub().session_count(), 0);
    assert_eq!(server.node().hub().channel_count(), 0);
    // And the server serves on.
    let next = Client::connect(&url).await.unwrap();
    next.ping().await.unwrap();
    server.shutdown().await;
}
