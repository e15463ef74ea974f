//! `run_service` over real sockets: HTTP and the protocol WebSocket on one port, the
//! built-in endpoints (`/`, `/healthz`, `/readyz`, `/metrics`, the server API), user routes,
//! handshake hardening (Origin allowlist, version, header deadline) and graceful
//! shutdown of upgraded sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use framework::client::{Client, ClientError};
use framework::protocol::{ErrorCode, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, metric, upgrade_headers, Request};
use framework_tests::{any_port, eventually_async, DEADLINE};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

/// How long an HTTP answer may take and still count as prompt (generous for a
/// loaded two-core machine; an idle one answers in about a millisecond).
const PROMPT: Duration = Duration::from_secs(2);

async fn start_service(app: App) -> AppHandle {
    app.run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

async fn start_with(config: Config) -> AppHandle {
    start_service(App::new().config(config)).await
}

fn ws_url(handle: &AppHandle) -> String {
    format!("ws://{}/ws", handle.service_addr())
}

async fn ws_client(handle: &AppHandle) -> Client {
    Client::connect(&ws_url(handle))
        .await
        .expect("protocol client connects over run_service")
}

/// Connects with an `Origin` header.
async fn connect_with_origin(url: &str, origin: &str) -> Result<Client, ClientError> {
    let mut request = url.into_client_request().expect("valid url");
    request.headers_mut().insert(
        "Origin",
        HeaderValue::from_str(origin).expect("header value"),
    );
    Client::connect_request(request).await
}

/// The HTTP status of a refused WebSocket handshake.
#[track_caller]
fn refused_status(result: Result<Client, ClientError>) -> u16 {
    match result {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            response.status().as_u16()
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(client) => panic!(
            "expected an HTTP refusal, but session {} was opened",
            client.session_id()
        ),
    }
}

fn json(response: &http::Response) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", response.text()))
}

/// Times an HTTP request.
async fn timed(addr: SocketAddr, request: Request<'_>) -> (http::Response, Duration) {
    let start = Instant::now();
    let response = http::send(addr, request).await;
    (response, start.elapsed())
}

/// A Prometheus sample of the server's `/metrics` (0 when absent).
async fn sample(addr: SocketAddr, name: &str) -> f64 {
    let response = http::get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    metric(&response.text(), name).unwrap_or(0.0)
}

/// Waits until the sample `name` of `/metrics` equals `want`.
async fn wait_for_metric(addr: SocketAddr, name: &str, want: f64) {
    let what = format!("/metrics {name} == {want}");
    eventually_async(&what, DEADLINE, || async {
        sample(addr, name).await == want
    })
    .await;
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The next delivery of `client` (panics after [`DEADLINE`]).
async fn delivery(client: &Client) -> framework::protocol::Frame {
    client
        .recv_timeout(DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no delivery for session {}", client.session_id()))
}

// --- one port, two protocols -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_stays_prompt_with_500_sessions_open_and_a_broadcast_reaches_all() {
    const SESSIONS: usize = 500;
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();

    // HTTP requests keep flowing on the same port while sessions connect and while a
    // broadcast fans out; the slowest of them is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let prober = tokio::spawn({
        let (stop, slowest_ms) = (stop.clone(), slowest_ms.clone());
        async move {
            let mut answered = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for path in ["/healthz", "/"] {
                    let (response, took) = timed(addr, Request::get(path)).await;
                    assert_eq!(response.status, 200, "GET {path} while sessions are open");
                    slowest_ms.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                    answered += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        }
    });

    let url = ws_url(&server);
    let mut clients = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS / 50 {
        let batch = join_all((0..50).map(|_| Client::connect(&url))).await;
        clients.extend(batch.into_iter().map(|c| c.expect("session connects")));
    }

    // Every session is open and HTTP on the same port answers promptly.
    let (health, took) = timed(addr, Request::get("/healthz")).await;
    assert_eq!(health.status, 200);
    assert!(
        took < PROMPT,
        "/healthz took {took:?} with {SESSIONS} sessions open"
    );
    assert_eq!(json(&health)["sessions"], SESSIONS as u64);
    let (landing, took) = timed(addr, Request::get("/")).await;
    assert_eq!(landing.status, 200);
    assert!(
        took < PROMPT,
        "/ took {took:?} with {SESSIONS} sessions open"
    );

    // One broadcast reaches all 500 (the sender included).
    let sender = clients[0].session_id();
    clients[0]
        .broadcast(b"to-everyone")
        .await
        .expect("broadcast acked");
    let (health, took) = timed(addr, Request::get("/healthz")).await;
    assert_eq!(health.status, 200);
    assert!(took < PROMPT, "/healthz took {took:?} during a broadcast");
    let got = join_all(clients.iter().map(|c| async move {
        let d = delivery(c).await;
        assert_eq!(d.opcode(), Opcode::Broadcast.0);
        assert_eq!(&d.payload()[..], b"to-everyone");
        assert_eq!(d.emitter_id(), Some(sender));
    }))
    .await;
    assert_eq!(got.len(), SESSIONS);

    stop.store(true, Ordering::Relaxed);
    let answered = prober.await.expect("prober ran");
    assert!(answered >= 2, "the prober got {answered} answers");
    let slowest = Duration::from_millis(slowest_ms.load(Ordering::Relaxed));
    assert!(
        slowest < PROMPT,
        "an HTTP request took {slowest:?} while sessions connected"
    );
    server.shutdown().await;
}

// --- built-in endpoints ------------------------------------------------------------

#[tokio::test]
async fn landing_page_is_html_and_names_the_websocket_path() {
    let server = start_with(Config::default()).await;
    let page = http::get(server.service_addr(), "/").await;
    assert_eq!(page.status, 200);
    let content_type = page.header("content-type").expect("a content type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = page.text();
    assert!(body.contains("<html"), "{body}");
    assert!(body.contains("/ws"), "the page names the WS path: {body}");
    server.shutdown().await;

    // A configured path is the one named, and the one that upgrades.
    let server = start_with(Config {
        websocket_path: "/realtime".into(),
        ..Config::default()
    })
    .await;
    let body = http::get(server.service_addr(), "/").await.text();
    assert!(body.contains("/realtime"), "{body}");
    let c = Client::connect(&format!("ws://{}/realtime", server.service_addr()))
        .await
        .expect("upgrade on the configured path");
    c.ping().await.expect("protocol on the configured path");
    assert_eq!(
        http::get(server.service_addr(), "/ws").await.status,
        404,
        "/ws is not special when another path is configured"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_node_sessions_and_uptime() {
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();
    let first = http::get(addr, "/healthz").await;
    assert_eq!(first.status, 200);
    assert!(first
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let body = json(&first);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["node_id"], server.node().node_id().to_string());
    assert_eq!(body["sessions"], 0);
    let uptime = body["uptime_seconds"].as_f64().expect("numeric uptime");
    assert!(uptime >= 0.0);

    let a = ws_client(&server).await;
    let b = ws_client(&server).await;
    let body = json(&http::get(addr, "/healthz").await);
    assert_eq!(body["sessions"], 2);
    eventually_async("uptime grows", DEADLINE, || async {
        json(&http::get(addr, "/healthz").await)["uptime_seconds"]
            .as_f64()
            .expect("numeric uptime")
            > uptime
    })
    .await;

    a.close();
    b.close();
    eventually_async("sessions back to 0", DEADLINE, || async {
        json(&http::get(addr, "/healthz").await)["sessions"] == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn readyz_answers_503_during_shutdown_healthz_stays_200_and_sessions_close_with_1001() {
    let server = start_with(Config {
        drain_grace: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let addr = server.service_addr();
    let url = ws_url(&server);
    let client = ws_client(&server).await;
    let ready = http::get(addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(json(&ready)["status"], "ready");
    assert_eq!(http::get(addr, "/healthz").await.status, 200);

    let shutdown = tokio::spawn(server.shutdown());
    let start = Instant::now();
    let draining = loop {
        let r = http::get(addr, "/readyz").await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200);
        assert!(
            start.elapsed() < DEADLINE,
            "/readyz never turned 503 during shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(json(&draining)["status"], "shutting_down");

    // During the grace period: the node is alive, open sessions still work, new
    // upgrades are refused.
    let live = http::get(addr, "/healthz").await;
    assert_eq!(live.status, 200, "liveness holds while draining");
    assert_eq!(json(&live)["status"], "shutting_down");
    client.ping().await.expect("an open session is served");
    assert_eq!(refused_status(Client::connect(&url).await), 503);

    tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
    assert!(
        client.recv_timeout(DEADLINE).await.is_none(),
        "the session ends"
    );
    assert_eq!(client.close_frame().map(|(code, _)| code), Some(1001));
    // The listeners stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn metrics_move_as_traffic_flows() {
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();
    let page = http::get(addr, "/metrics").await;
    assert_eq!(page.status, 200);
    let content_type = page.header("content-type").expect("a content type");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = page.text();
    for family in [
        "framework_sessions",
        "framework_channels",
        "framework_frames_in_total",
        "framework_bytes_in_total",
        "framework_frames_out_total",
        "framework_bytes_out_total",
        "framework_errors_total",
        "framework_slow_consumer_closes_total",
        "framework_dropped_deliveries_total",
        "framework_handler_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "/metrics lacks {family}:\n{text}"
        );
    }
    let ping_in = r#"framework_frames_in_total{opcode="Ping"}"#;
    let pong_out = r#"framework_frames_out_total{opcode="Pong"}"#;
    let bad_frame = r#"framework_errors_total{code="BadFrame"}"#;
    assert_eq!(metric(&text, "framework_sessions"), Some(0.0));
    assert_eq!(metric(&text, ping_in), Some(0.0));
    assert_eq!(metric(&text, bad_frame), Some(0.0));

    let a = ws_client(&server).await;
    let b = ws_client(&server).await;
    wait_for_metric(addr, "framework_sessions", 2.0).await;
    wait_for_metric(addr, "framework_sessions_opened_total", 2.0).await;

    for _ in 0..3 {
        a.ping().await.expect("pong");
    }
    wait_for_metric(addr, ping_in, 3.0).await;
    wait_for_metric(addr, pong_out, 3.0).await;
    assert!(sample(addr, r#"framework_bytes_in_total{opcode="Ping"}"#).await > 0.0);
    assert!(sample(addr, "framework_handler_duration_seconds_count").await >= 3.0);

    a.subscribe("news").await.expect("subscribed");
    wait_for_metric(addr, "framework_channels", 1.0).await;

    // A frame that is not a protocol message: an Error/BadFrame, counted.
    b.send_frame(Bytes::from_static(b"certainly not flatbuffers"))
        .expect("sent");
    let error = delivery(&b).await;
    assert_eq!(error.opcode(), Opcode::Error.0);
    assert_eq!(error.error_code(), ErrorCode::BadFrame);
    wait_for_metric(addr, bad_frame, 1.0).await;

    a.close();
    wait_for_metric(addr, "framework_sessions", 1.0).await;
    wait_for_metric(addr, "framework_channels", 0.0).await;
    server.shutdown().await;
}

// --- the server API ----------------------------------------------------------------

#[tokio::test]
async fn server_api_is_off_without_a_key() {
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();
    for (path, body) in [
        ("/api/publish", r#"{"channel":"news","payload":"aGk="}"#),
        (
            "/api/send",
            r#"{"receiver_id":"00000000-0000-0000-0000-000000000001"}"#,
        ),
        ("/api/broadcast", r#"{"payload":"aGk="}"#),
    ] {
        let r = http::send(
            addr,
            Request::post_json(path, body).header("Authorization", "Bearer anything"),
        )
        .await;
        assert_eq!(
            r.status,
            404,
            "{path} without a configured key: {}",
            r.text()
        );
    }
    server.shutdown().await;
}

const KEY: &str = "s3cret-api-key";

fn with_key() -> Config {
    Config {
        api_key: Some(KEY.into()),
        ..Config::default()
    }
}

#[tokio::test]
async fn server_api_refuses_a_missing_or_wrong_key() {
    let server = start_with(with_key()).await;
    let addr = server.service_addr();
    let body = r#"{"payload":"aGk="}"#;
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Basic s3cret-api-key")],
        vec![("Authorization", KEY)],
        vec![("X-Api-Key", "wrong")],
        vec![("X-Api-Key", "s3cret-api-ke")],
        vec![("X-Api-Key", "s3cret-api-key-and-more")],
    ] {
        for path in ["/api/publish", "/api/send", "/api/broadcast"] {
            let mut request = Request::post_json(path, body);
            request.headers.extend(headers.iter().copied());
            let r = http::send(addr, request).await;
            assert_eq!(r.status, 401, "{path} with {headers:?}: {}", r.text());
            assert!(json(&r)["error"].is_string());
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn server_api_delivers_like_a_client_with_the_server_as_emitter() {
    let server = start_with(with_key()).await;
    let addr = server.service_addr();
    let a = ws_client(&server).await;
    let b = ws_client(&server).await;
    a.subscribe("news").await.expect("subscribed");
    let bearer = format!("Bearer {KEY}");
    let auth_styles: [(&str, &str); 2] = [("Authorization", &bearer), ("X-Api-Key", KEY)];

    for (header, value) in auth_styles {
        let what = format!("with {header}");
        // Publish: to the channel's subscribers only.
        let payload = format!("published {what}");
        let body = format!(
            r#"{{"channel":"news","payload":"{}"}}"#,
            b64(payload.as_bytes())
        );
        let r = http::send(
            addr,
            Request::post_json("/api/publish", &body).header(header, value),
        )
        .await;
        assert_eq!(r.status, 200, "publish {what}: {}", r.text());
        assert_eq!(json(&r)["ok"], true);
        let d = delivery(&a).await;
        assert_eq!(d.opcode(), Opcode::Publish.0, "{what}");
        assert_eq!(d.channel(), Some("news"));
        assert_eq!(&d.payload()[..], payload.as_bytes());
        assert_eq!(d.emitter_id(), Some(Uuid::nil()), "publish {what}");
        assert!(d.trace_id().is_some());
        assert!(d.token().is_none());

        // Send: to exactly one session.
        let payload = format!("sent {what}");
        let body = format!(
            r#"{{"receiver_id":"{}","payload":"{}"}}"#,
            b.session_id(),
            b64(payload.as_bytes())
        );
        let r = http::send(
            addr,
            Request::post_json("/api/send", &body).header(header, value),
        )
        .await;
        assert_eq!(r.status, 200, "send {what}: {}", r.text());
        let d = delivery(&b).await;
        assert_eq!(d.opcode(), Opcode::Send.0, "{what}");
        assert_eq!(&d.payload()[..], payload.as_bytes());
        assert_eq!(d.emitter_id(), Some(Uuid::nil()), "send {what}");

        // Broadcast: to everyone.
        let payload = format!("broadcast {what}");
        let body = format!(r#"{{"payload":"{}"}}"#, b64(payload.as_bytes()));
        let r = http::send(
            addr,
            Request::post_json("/api/broadcast", &body).header(header, value),
        )
        .await;
        assert_eq!(r.status, 200, "broadcast {what}: {}", r.text());
        for c in [&a, &b] {
            let d = delivery(c).await;
            assert_eq!(d.opcode(), Opcode::Broadcast.0, "{what}");
            assert_eq!(&d.payload()[..], payload.as_bytes());
            assert_eq!(d.emitter_id(), Some(Uuid::nil()), "broadcast {what}");
        }
    }

    // Nothing else was delivered: b is not subscribed, a was not the Send target.
    assert!(a.recv_timeout(Duration::from_millis(100)).await.is_none());
    assert!(b.recv_timeout(Duration::from_millis(100)).await.is_none());

    // An empty (omitted) payload is allowed.
    let r = http::send(
        addr,
        Request::post_json("/api/broadcast", "{}").header("X-Api-Key", KEY),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = delivery(&a).await;
    assert_eq!(d.opcode(), Opcode::Broadcast.0);
    assert!(d.payload().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn server_api_rejects_bad_requests() {
    let server = start_with(with_key()).await;
    let addr = server.service_addr();
    let long_channel = format!(r#"{{"channel":"{}","payload":""}}"#, "c".repeat(256));
    let unknown = format!(r#"{{"receiver_id":"{}","payload":"aGk="}}"#, Uuid::new_v4());
    let cases: Vec<(&str, &str, u16)> = vec![
        ("/api/send", &unknown, 404),
        (
            "/api/publish",
            r#"{"channel":"news","payload":"%%% not base64"}"#,
            400,
        ),
        (
            "/api/send",
            r#"{"receiver_id":"00000000-0000-0000-0000-000000000001","payload":"***"}"#,
            400,
        ),
        ("/api/broadcast", r#"{"payload":"aGk"}"#, 400),
        ("/api/publish", r#"{"channel":"news","payload":"aGk="#, 400),
        ("/api/send", "not json at all", 400),
        ("/api/broadcast", "[1, 2, 3]", 400),
        ("/api/publish", r#"{"payload":"aGk="}"#, 400),
        (
            "/api/send",
            r#"{"receiver_id":"not-a-uuid","payload":"aGk="}"#,
            400,
        ),
        ("/api/publish", r#"{"channel":"","payload":"aGk="}"#, 400),
        (
            "/api/publish",
            r#"{"channel":"bad\u0007channel","payload":"aGk="}"#,
            400,
        ),
        ("/api/publish", &long_channel, 400),
    ];
    for (path, body, status) in cases {
        let r = http::send(
            addr,
            Request::post_json(path, body).header("X-Api-Key", KEY),
        )
        .await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        assert!(json(&r)["error"].is_string(), "{path} {body}: {}", r.text());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn user_routes_are_merged_with_the_builtins() {
    let routes = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|| async { "hello from the app" }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: String| async move { format!("echo: {body}") }),
        );
    let server = start_service(App::new().router(routes)).await;
    let addr = server.service_addr();
    let r = http::get(addr, "/hello").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from the app");
    let r = http::send(addr, Request::post_json("/echo", "abc")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "echo: abc");
    assert_eq!(http::get(addr, "/healthz").await.status, 200);
    assert_eq!(http::get(addr, "/no-such-route").await.status, 404);
    ws_client(&server)
        .await
        .ping()
        .await
        .expect("WS still served");
    server.shutdown().await;
}

/// Sends a WebSocket upgrade request for `path` and reads once, as a client
/// does: everything the server wrote in one go.
async fn upgrade_and_read_once(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let request = Request {
        method: "GET",
        path,
        headers: upgrade_headers(),
        body: b"",
    };
    tcp.write_all(&request.to_bytes(addr)).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer to the upgrade of {path} within {DEADLINE:?}"))
        .expect("read");
    buf.truncate(n);
    buf
}

/// The session writes the 101 (held back from hyper) with its `Welcome`: a
/// client's first read has both, one whole frame after the head. (That they
/// are one write is `services::plain`'s unit tests' to show.)
#[tokio::test]
async fn the_101_and_the_welcome_arrive_together() {
    let server = start_service(App::new()).await;
    let got = upgrade_and_read_once(server.service_addr(), "/ws").await;
    let head_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole response head")
        + 4;
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{got:?}");
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    // The Welcome frame follows in the same read: one unfragmented binary frame.
    let frame = &got[head_end..];
    assert!(frame.len() > 2, "the Welcome came in a write of its own");
    assert_eq!(frame[0], 0x82, "a final binary frame");
    let len = usize::from(frame[1] & 0x7f);
    assert!(
        len < 126 && frame.len() == 2 + len,
        "one whole frame: {frame:?}"
    );
    let welcome = framework::protocol::Frame::decode(
        Bytes::copy_from_slice(&frame[2..]),
        &framework::protocol::DecodeLimits::default(),
    )
    .expect("a protocol frame");
    assert_eq!(welcome.opcode(), Opcode::Welcome.0);
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_route_that_upgrades_itself_gets_its_101_written() {
    // The application's own upgrade (hyper's, not the framework's WebSocket): its
    // 101 is not held back for a session that does not exist, and what it writes
    // on the upgraded stream follows.
    let routes = axum::Router::new().route(
        "/own",
        axum::routing::get(|mut req: axum::extract::Request| async move {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.expect("upgraded");
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                io.write_all(b"own protocol").await.expect("write");
                io.flush().await.expect("flush");
                // Held open until the client has read.
                tokio::time::sleep(DEADLINE).await;
            });
            axum::response::Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .body(axum::body::Body::empty())
                .expect("a response")
        }),
    );
    let server = start_service(App::new().router(routes)).await;
    let addr = server.service_addr();
    let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let request = Request {
        method: "GET",
        path: "/own",
        headers: upgrade_headers(),
        body: b"",
    };
    tcp.write_all(&request.to_bytes(addr)).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"own protocol") {
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
            .await
            .expect("the app's 101 and its bytes within the deadline")
            .expect("read");
        assert!(n > 0, "closed after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{got:?}");
    server.shutdown().await;
}

// --- handshake hardening -----------------------------------------------------------

fn good_origin_only() -> Config {
    Config {
        allowed_origins: vec!["https://good.example".into()],
        ..Config::default()
    }
}

#[tokio::test]
async fn origin_allowlist_is_enforced_on_upgrade() {
    let server = start_with(good_origin_only()).await;
    let addr = server.service_addr();
    let url = ws_url(&server);

    let good = connect_with_origin(&url, "https://good.example")
        .await
        .expect("an allowed origin upgrades");
    good.ping().await.expect("and speaks the protocol");
    let none = Client::connect(&url)
        .await
        .expect("a request without Origin upgrades");
    none.ping().await.expect("and speaks the protocol");

    for bad in [
        "https://evil.example",
        "http://good.example",
        "https://good.example.evil",
        "https://good.example/",
        "null",
    ] {
        assert_eq!(
            refused_status(connect_with_origin(&url, bad).await),
            403,
            "Origin {bad}"
        );
        let mut request = Request::get("/ws");
        request.headers = upgrade_headers();
        request.headers.push(("Origin", bad));
        assert_eq!(http::send(addr, request).await.status, 403, "Origin {bad}");
    }
    assert_eq!(json(&http::get(addr, "/healthz").await)["sessions"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn standalone_websocket_service_enforces_the_origin_allowlist() {
    let server = App::new()
        .config(good_origin_only())
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts");
    let url = format!("ws://{}/", server.websocket_addr());
    connect_with_origin(&url, "https://good.example")
        .await
        .expect("an allowed origin upgrades");
    Client::connect(&url)
        .await
        .expect("a request without Origin upgrades");
    assert_eq!(
        refused_status(connect_with_origin(&url, "https://evil.example").await),
        403,
        "run_websocket_service must refuse an origin outside allowed_origins"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn standalone_websocket_service_upgrades_only_a_get() {
    let server = App::new()
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts");
    // RFC 6455 §4.2.1: an upgrade is a GET. This listener answers every method
    // and path, and refuses the others' upgrades with 405.
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let mut request = Request::get("/");
        request.method = method;
        request.headers = upgrade_headers();
        let r = http::send(server.websocket_addr(), request).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"), "{method}");
    }
    let mut request = Request::get("/");
    request.headers = upgrade_headers();
    assert_eq!(
        http::send(server.websocket_addr(), request).await.status,
        101
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_upgrades_are_answered_per_rfc_6455() {
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();

    // An unsupported version: 426 naming the version this server speaks.
    for version in ["8", "12", "14", "abc"] {
        let mut request = Request::get("/ws");
        request.headers = upgrade_headers();
        request
            .headers
            .retain(|(n, _)| *n != "Sec-WebSocket-Version");
        request.headers.push(("Sec-WebSocket-Version", version));
        let r = http::send(addr, request).await;
        assert_eq!(r.status, 426, "version {version}");
        assert_eq!(r.header("sec-websocket-version"), Some("13"));
    }
    // No version at all.
    let mut request = Request::get("/ws");
    request.headers = upgrade_headers();
    request
        .headers
        .retain(|(n, _)| *n != "Sec-WebSocket-Version");
    let r = http::send(addr, request).await;
    assert_eq!(r.status, 426, "no version");
    assert_eq!(r.header("sec-websocket-version"), Some("13"));

    // A plain GET of the WebSocket path: 426 Upgrade Required.
    let r = http::get(addr, "/ws").await;
    assert_eq!(r.status, 426);
    assert!(r
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")));

    // A missing or malformed key: 400.
    for key in [
        None,
        Some("too-short"),
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        // 24 characters, but 18 bytes; 16 bytes without the padding; a `=` inside.
        Some("AAAAAAAAAAAAAAAAAAAAAAAA"),
        Some("AAAAAAAAAAAAAAAAAAAAAA"),
        Some("AAAAAAAAAAAAAAAAAAAA=A=="),
    ] {
        let mut request = Request::get("/ws");
        request.headers = upgrade_headers();
        request.headers.retain(|(n, _)| *n != "Sec-WebSocket-Key");
        if let Some(key) = key {
            request.headers.push(("Sec-WebSocket-Key", key));
        }
        assert_eq!(http::send(addr, request).await.status, 400, "key {key:?}");
    }

    // A correct upgrade: 101 with the RFC's accept value for the RFC's sample key.
    let mut request = Request::get("/ws");
    request.headers = upgrade_headers();
    let r = http::send(addr, request).await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_dropped_at_the_deadline_without_blocking_others() {
    let timeout = Duration::from_secs(1);
    let server = start_with(Config {
        handshake_timeout: timeout,
        ..Config::default()
    })
    .await;
    let addr = server.service_addr();

    let connected = Instant::now();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = tcp.into_split();
    write
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("request line");
    // One byte of a header every 200 ms: the head would take 20 s to complete.
    let trickle = tokio::spawn(async move {
        for &byte in
            b"X-Slow-Header: 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let dropped = tokio::spawn(async move {
        let mut sink = Vec::new();
        // Ends on EOF or reset: whatever the server says first, it must hang up.
        let _ = read.read_to_end(&mut sink).await;
        connected.elapsed()
    });

    // Meanwhile other connections are served at once.
    for _ in 0..3 {
        let (r, took) = timed(addr, Request::get("/healthz")).await;
        assert_eq!(r.status, 200);
        assert!(took < PROMPT, "/healthz took {took:?} beside a slow client");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = ws_client(&server).await;
    c.ping()
        .await
        .expect("a WebSocket session beside a slow client");

    let held = tokio::time::timeout(DEADLINE, dropped)
        .await
        .expect("the slow client is disconnected within the deadline")
        .expect("reader task");
    assert!(
        held >= timeout.mul_f32(0.9),
        "dropped after {held:?}, before the {timeout:?} deadline"
    );
    assert!(
        held < timeout + Duration::from_secs(4),
        "the slow client was held for {held:?} with a {timeout:?} header deadline"
    );
    trickle.abort();
    server.shutdown().await;
}

// --- graceful shutdown ---------------------------------------------------------------

#[tokio::test]
async fn shutdown_closes_upgraded_sessions_with_1001() {
    let server = start_with(Config::default()).await;
    let addr = server.service_addr();
    let clients = join_all((0..3).map(|_| ws_client(&server))).await;
    let (mut raw, _) = tokio_tungstenite::connect_async(ws_url(&server))
        .await
        .expect("raw upgrade");
    // The raw socket sees Welcome first.
    let welcome = futures_util::StreamExt::next(&mut raw)
        .await
        .expect("welcome")
        .expect("welcome ok");
    assert!(welcome.is_binary());
    clients[0].subscribe("news").await.expect("subscribed");

    let started = Instant::now();
    tokio::time::timeout(DEADLINE, server.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(started.elapsed() < DEADLINE);
    for c in &clients {
        assert!(c.recv_timeout(DEADLINE).await.is_none(), "session ended");
        assert_eq!(
            c.close_frame().map(|(code, _)| code),
            Some(1001),
            "session {} closed with 1001",
            c.session_id()
        );
    }
    let ending = tokio::time::timeout(DEADLINE, async {
        loop {
            match futures_util::StreamExt::next(&mut raw).await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c))) => {
                    return c.map(|c| u16::from(c.code))
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the raw socket ends");
    assert_eq!(ending, Some(1001));
    // And HTTP is closed too.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port no longer accepts"
    );
}
