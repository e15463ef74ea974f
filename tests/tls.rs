//! TLS on every service, end to end on loopback, with certificates made at test
//! time: the Rust client over `wss://` on `run_websocket_service`, `run_service`
//! (and HTTPS on its routes) and a raw service; handshakes that fail or stall
//! (counted, timed out, never touching other connections) and the connection
//! limits; certificates reloaded when their files change while open connections
//! stay; certificates that do not load stopping `start`; and WebSockets over
//! HTTP/2 (RFC 8441 extended CONNECT) on `run_service`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use framework::client::{Client, ClientError};
use framework::config::TlsConfig;
use framework::protocol::{DecodeLimits, Frame, FrameFields, Opcode};
use framework::raw::{RawConnection, RawMessage};
use framework::{App, AppHandle, Config};
use framework_tests::tls::{replace, TestCa};
use framework_tests::tools::TempDir;
use framework_tests::{any_port, eventually, eventually_async, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn temp_dir(prefix: &str) -> TempDir {
    TempDir::new(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), prefix)
}

/// An app serving the protocol on a WebSocket port and on `run_service`, and a
/// raw echo service, all over TLS with `tls`.
async fn start_tls(config: Config, tls: TlsConfig) -> AppHandle {
    App::new()
        .config(config)
        .tls(tls)
        .register_custom_handler(200, |ctx: framework::Request| {
            ctx.body().iter().rev().copied().collect::<Vec<u8>>()
        })
        .run_websocket_service(any_port())
        .run_service(any_port())
        .run_raw_websocket_service(any_port(), |conn: RawConnection| async move {
            while let Some(msg) = conn.recv().await {
                let _ = match msg {
                    RawMessage::Text(t) => conn.send_text(t.to_string()),
                    RawMessage::Binary(b) => conn.send(b),
                };
            }
        })
        .start()
        .await
        .expect("a TLS server starts")
}

async fn wss_client(url: &str, ca: &TestCa) -> Result<Client, ClientError> {
    Client::builder(url)
        .tls_root_certificates(&ca.pem)
        .connect()
        .await
}

/// Opcode 200 reverses its payload: a request/reply round trip.
async fn round_trip(client: &Client) {
    let reply = client.request(200, b"abc").await.expect("a reply");
    assert_eq!(&reply.payload()[..], b"cba");
    client.ping().await.expect("a pong");
}

/// A TLS connection to `addr` trusting only `ca`, offering `alpn`.
async fn tls_connect(addr: SocketAddr, ca: &TestCa, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(alpn));
    let name = framework::rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// `GET path` over HTTPS (HTTP/1.1): the status and the body.
async fn https_get(addr: SocketAddr, ca: &TestCa, path: &str) -> (u16, String) {
    let tls = tls_connect(addr, ca, &[b"http/1.1"]).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = send.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("a body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

/// Behind a layer-4 balancer that terminates nothing: the balancer's PROXY
/// header comes first, in the clear, then the client's own TLS handshake; the
/// session sees the client the header names, and a header from an untrusted
/// peer is never taken for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_before_the_tls_handshake_names_the_client() {
    let dir = temp_dir("tls-proxy");
    let ca = TestCa::new("proxy CA");
    let server = App::new()
        .config(Config {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            proxy_protocol: true,
            ..Config::default()
        })
        .tls(ca.write_server_files(&dir.0))
        .register_custom_handler(200, |conn: framework::session::Connection| {
            conn.peer_addr().to_string().into_bytes()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("a TLS server starts");
    let addr = server.websocket_addr();
    // The session's address, through `tcp` with `prefix` written first.
    let address = |tcp: TcpStream, prefix: &'static [u8]| {
        let ca = &ca;
        async move {
            let mut tcp = tcp;
            tokio::io::AsyncWriteExt::write_all(&mut tcp, prefix)
                .await
                .unwrap();
            let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
            let name = framework::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let tls = connector.connect(name, tcp).await?;
            let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/"), tls)
                .await
                .map_err(std::io::Error::other)?;
            let request = FrameFields::new(200).encode();
            ws.send(Message::Binary(request)).await.unwrap();
            loop {
                let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
                    return Err(std::io::Error::other("no reply"));
                };
                let frame = Frame::decode(bytes, &DecodeLimits::default()).expect("a frame");
                if frame.opcode() == 200 {
                    return Ok(String::from_utf8_lossy(&frame.payload()).into_owned());
                }
            }
        }
    };
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 443\r\n";
    let proxied = TcpStream::connect(addr).await.unwrap();
    assert_eq!(address(proxied, v1).await.unwrap(), "203.0.113.7:51000");
    // From an untrusted address the same bytes are no PROXY header: the TLS
    // handshake fails on them, and nobody is served as 203.0.113.7.
    let direct = framework_tests::tcp_from("127.0.0.2", addr).await;
    assert!(address(direct, v1).await.is_err());
    // Without a header, the trusted peer is refused before any TLS.
    let bare = TcpStream::connect(addr).await.unwrap();
    assert!(address(bare, b"").await.is_err());
    server.shutdown().await;
}

fn tls_failures(handle: &AppHandle) -> u64 {
    handle.node().metrics().tls_handshake_failures.load(Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_speaks_tls() {
    let dir = temp_dir("tls-services");
    let ca = TestCa::new("services CA");
    let server = start_tls(Config::default(), ca.write_server_files(&dir.0)).await;

    // The protocol, on its own port and on run_service's path.
    let ws = wss_client(&format!("wss://{}/", server.websocket_addr()), &ca)
        .await
        .expect("wss on run_websocket_service");
    round_trip(&ws).await;
    let service = wss_client(&format!("wss://{}/ws", server.service_addr()), &ca)
        .await
        .expect("wss on run_service");
    round_trip(&service).await;
    // Deliveries cross listeners as usual.
    service.subscribe("news").await.expect("subscribe");
    ws.publish("news", b"over TLS").await.expect("publish");
    let delivery = service.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(&delivery.payload()[..], b"over TLS");

    // run_service's routes over HTTPS.
    let (status, body) = https_get(server.service_addr(), &ca, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let (status, metrics) = https_get(server.service_addr(), &ca, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("framework_tls_handshake_failures_total 0"),
        "{metrics}"
    );

    // The raw service.
    let connector = tokio_tungstenite::Connector::Rustls(ca.client_config(&[]));
    let (mut raw, _) = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://{}/", server.raw_addrs()[0]),
        None,
        true,
        Some(connector),
    )
    .await
    .expect("wss on the raw service");
    raw.send(Message::text("echo me")).await.expect("send");
    let echoed = tokio::time::timeout(DEADLINE, raw.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(echoed, Message::text("echo me"));

    // A plain WebSocket to a TLS port gets nothing: no silent downgrade.
    let plain = Client::connect(&format!("ws://{}/", server.websocket_addr())).await;
    assert!(plain.is_err(), "ws:// to a TLS port must fail");
    eventually("the failed handshake is counted", DEADLINE, || {
        tls_failures(&server) >= 1
    })
    .await;
    round_trip(&ws).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_and_touch_no_other_connection() {
    let dir = temp_dir("tls-failures");
    let ca = TestCa::new("the server's CA");
    let server = start_tls(Config::default(), ca.write_server_files(&dir.0)).await;
    let url = format!("wss://{}/", server.websocket_addr());
    let good = wss_client(&url, &ca).await.expect("connects");

    // A client that does not trust the server's CA refuses it.
    let stranger = TestCa::new("another CA");
    let refused = wss_client(&url, &stranger).await;
    let error = refused.expect_err("an unknown issuer is refused");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    // Bytes that are no ClientHello.
    let mut junk = TcpStream::connect(server.websocket_addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, junk.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection that is not TLS"
    );

    eventually("both failures are counted", DEADLINE, || {
        tls_failures(&server) >= 2
    })
    .await;
    round_trip(&good).await;
    // Bad roots in the client's options are the client's error.
    let bad_roots = Client::builder(&url)
        .tls_root_certificates("not PEM")
        .connect()
        .await;
    assert!(
        matches!(bad_roots, Err(ClientError::Tls(_))),
        "{bad_roots:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_time_out_and_count_against_the_connection_limits() {
    let dir = temp_dir("tls-limits");
    let ca = TestCa::new("limits CA");
    let config = Config {
        handshake_timeout: Duration::from_millis(500),
        max_connections_per_ip: 2,
        ..Config::default()
    };
    let server = start_tls(config, ca.write_server_files(&dir.0)).await;
    let url = format!("wss://{}/", server.websocket_addr());

    let started = std::time::Instant::now();
    let stalled = loop {
        // Two connections that never start their handshake hold both slots...
        let mut stalled = Vec::new();
        for _ in 0..2 {
            stalled.push(TcpStream::connect(server.websocket_addr()).await.unwrap());
        }
        // ...so a third is answered 429 once its handshake is done. On a loaded
        // machine the pair can reach its handshake timeout first: then again,
        // with a new pair (the old one is dropped, which frees its slots).
        match wss_client(&url, &ca).await {
            Err(e) if e.to_string().contains("429") => break stalled,
            other => assert!(
                started.elapsed() < DEADLINE,
                "a connection over the limit is never refused: {:?}",
                other.map(|_| ())
            ),
        }
    };
    // The stalled ones are closed at handshake_timeout, and counted.
    for mut tcp in stalled {
        let mut buf = Vec::new();
        let ended = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut buf)).await;
        assert!(ended.is_ok(), "a stalled handshake is closed");
    }
    eventually("the timeouts are counted", DEADLINE, || {
        tls_failures(&server) >= 2
    })
    .await;
    // Their slots are free again.
    let freed = std::time::Instant::now();
    let client = loop {
        match wss_client(&url, &ca).await {
            Ok(client) => break client,
            Err(e) => assert!(freed.elapsed() < DEADLINE, "no room again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    round_trip(&client).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_reloaded_and_open_connections_stay() {
    let dir = temp_dir("tls-reload");
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let mut tls = old_ca.write_server_files(&dir.0);
    tls.reload_interval = Duration::from_millis(50);
    let server = start_tls(Config::default(), tls.clone()).await;
    let url = format!("wss://{}/", server.websocket_addr());
    let open = wss_client(&url, &old_ca).await.expect("connects");
    assert!(
        wss_client(&url, &new_ca).await.is_err(),
        "not yet the new CA"
    );

    // The files are replaced: new handshakes get the new certificate.
    new_ca.write_server_files(&dir.0);
    eventually_async("the new certificate is served", DEADLINE, || async {
        wss_client(&url, &new_ca).await.is_ok()
    })
    .await;
    assert!(server.node().metrics().tls_reloads.load(Relaxed) >= 1);
    // The connection made with the old one goes on.
    round_trip(&open).await;

    // A broken certificate is refused; the one in use stays.
    replace(&tls.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    eventually("the broken certificate is refused", DEADLINE, || {
        server.node().metrics().tls_reload_failures.load(Relaxed) >= 1
    })
    .await;
    let still = wss_client(&url, &new_ca).await.expect("the new one stays");
    round_trip(&still).await;
    let error = server.reload_tls().await.expect_err("a broken file");
    assert!(
        error.to_string().contains("cert.pem"),
        "names the file: {error}"
    );
    // A key that is not the certificate's.
    let other = new_ca.issue();
    replace(&tls.cert_file, &other.chain);
    let error = server.reload_tls().await.expect_err("a key of another");
    assert!(error.to_string().contains("not the key"), "{error}");
    round_trip(&open).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_start() {
    let dir = temp_dir("tls-start");
    let ca = TestCa::new("start CA");
    let good = ca.write_server_files(&dir.0);
    let start = |tls: TlsConfig| async move {
        App::new()
            .tls(tls)
            .run_websocket_service(any_port())
            .start()
            .await
            .expect_err("start must fail")
            .to_string()
    };
    let missing = TlsConfig::new(dir.0.join("nope.pem"), &good.key_file);
    let error = start(missing).await;
    assert!(
        error.contains("cannot read") && error.contains("nope.pem"),
        "{error}"
    );
    let empty = dir.0.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = start(TlsConfig::new(&empty, &good.key_file)).await;
    assert!(error.contains("no certificate"), "{error}");
    let error = start(TlsConfig::new(&good.cert_file, &empty)).await;
    assert!(error.contains("no private key"), "{error}");
    let mismatched = dir.0.join("other.pem");
    std::fs::write(&mismatched, ca.issue().chain).unwrap();
    let error = start(TlsConfig::new(&mismatched, &good.key_file)).await;
    assert!(error.contains("not the key"), "{error}");
}

/// A WebSocket over HTTP/2: the protocol's frames on one stream.
type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens a WebSocket on `send`'s HTTP/2 connection (RFC 8441 extended CONNECT):
/// the WebSocket, or the status it was refused with.
async fn h2_websocket(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    version: &str,
) -> Result<H2Ws, u16> {
    let request = hyper::Request::builder()
        .method(hyper::Method::CONNECT)
        .uri(format!("https://{addr}/ws"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", version)
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let mut response = send.send_request(request).await.expect("a response");
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let upgraded = hyper::upgrade::on(&mut response).await.expect("upgraded");
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

async fn next_frame(ws: &mut H2Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("in time")
            .expect("a message")
            .expect("no error");
        if let Message::Binary(b) = msg {
            return Frame::decode(b, &DecodeLimits::default()).expect("a frame");
        }
    }
}

/// Sends opcode 200 with `payload` and returns the reply's payload.
async fn h2_request(ws: &mut H2Ws, payload: &[u8]) -> Bytes {
    let tx = uuid::Uuid::new_v4();
    let frame = FrameFields::new(200)
        .transaction_id(Some(tx))
        .payload(payload)
        .encode();
    ws.send(Message::Binary(frame)).await.expect("send");
    loop {
        let reply = next_frame(ws).await;
        if reply.transaction_id() == Some(tx) {
            return reply.payload();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_share_one_connection() {
    let dir = temp_dir("tls-h2");
    let ca = TestCa::new("h2 CA");
    let config = Config {
        // The h2 connection and two WebSockets on it; a third is over the limit.
        max_connections_per_ip: 3,
        ..Config::default()
    };
    let server = start_tls(config, ca.write_server_files(&dir.0)).await;
    let addr = server.service_addr();

    let tls = tls_connect(addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "run_service chooses h2"
    );
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);

    // An ordinary request on the connection first (its SETTINGS arrive with it).
    let health = hyper::Request::get(format!("https://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(health).await.expect("/healthz");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);

    // Two WebSockets on the same connection, each its own session.
    let mut first = h2_websocket(&mut send, addr, "13")
        .await
        .expect("a WebSocket");
    let welcome = next_frame(&mut first).await;
    assert_eq!(welcome.opcode(), Opcode::Welcome.0);
    let mut second = h2_websocket(&mut send, addr, "13").await.expect("another");
    let other = next_frame(&mut second).await;
    assert_ne!(welcome.receiver_id(), other.receiver_id());
    assert_eq!(&h2_request(&mut first, b"abc").await[..], b"cba");
    assert_eq!(&h2_request(&mut second, b"xyz").await[..], b"zyx");

    // Each WebSocket counts against the per-address limit.
    assert_eq!(h2_websocket(&mut send, addr, "13").await.err(), Some(429));
    // A version the server does not speak.
    assert_eq!(h2_websocket(&mut send, addr, "8").await.err(), Some(400));

    // A client on HTTP/1.1 meets the sessions of HTTP/2 ones.
    drop(second);
    let h1 = eventually_async_client(&format!("wss://{addr}/ws"), &ca).await;
    h1.subscribe("mixed").await.expect("subscribe");
    let publish = FrameFields::new(Opcode::Publish.0)
        .channel("mixed")
        .payload(b"from h2")
        .encode();
    first.send(Message::Binary(publish)).await.expect("publish");
    let delivery = h1.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(&delivery.payload()[..], b"from h2");

    h2_close(&mut first).await;
    server.shutdown().await;
}

/// Closes a WebSocket over HTTP/2 and waits for the server's Close.
///
/// The server resets the stream (RST_STREAM NO_ERROR) right after its Close,
/// and on a loaded machine the reset can reach the client before its own
/// `close` returns, which then reports the ended stream (1 run in ~10 here):
/// the server's Close is what shows the exchange was whole.
async fn h2_close(ws: &mut H2Ws) {
    let closed = ws.close(None).await;
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => {}
            other => panic!("the server's Close, got {other:?} (close: {closed:?})"),
        }
    }
}

/// A `wss://` client, retried until a slot is free (a closed WebSocket's slot is
/// released when its session has ended).
async fn eventually_async_client(url: &str, ca: &TestCa) -> Client {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match wss_client(url, ca).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never connected: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_and_its_websockets_go_on() {
    let dir = temp_dir("tls-h2-idle");
    let ca = TestCa::new("h2 idle CA");
    let idle = Duration::from_millis(300);
    let config = Config {
        handshake_timeout: idle,
        ..Config::default()
    };
    let server = start_tls(config, ca.write_server_files(&dir.0)).await;
    let addr = server.service_addr();
    let h2 = |ca: &TestCa| {
        let ca = ca.client_config(&[b"h2"]);
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = framework::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let tls = tokio_rustls::TlsConnector::from(ca)
                .connect(name, tcp)
                .await
                .unwrap();
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
                .await
                .expect("h2 handshake")
        }
    };

    // A connection that opens no stream is closed by the server.
    let (mut send, conn) = h2(&ca).await;
    let idle_conn = tokio::spawn(conn);
    let health = hyper::Request::get(format!("https://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(health).await.unwrap().status(), 200);
    let ended = tokio::time::timeout(DEADLINE, idle_conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection is closed");

    // One with a WebSocket is sent GOAWAY too, but the WebSocket goes on.
    let (mut send, conn) = h2(&ca).await;
    let busy_conn = tokio::spawn(conn);
    let mut ws = h2_websocket(&mut send, addr, "13")
        .await
        .expect("a WebSocket");
    assert_eq!(next_frame(&mut ws).await.opcode(), Opcode::Welcome.0);
    tokio::time::sleep(idle * 4).await;
    assert_eq!(&h2_request(&mut ws, b"still").await[..], b"llits");
    assert!(
        !busy_conn.is_finished(),
        "the connection lives with its WebSocket"
    );
    h2_close(&mut ws).await;
    drop(ws);
    // `send` stays: the client does not end the connection, the server does.
    let ended = tokio::time::timeout(DEADLINE, busy_conn).await;
    assert!(
        ended.is_ok(),
        "once its last stream is done the connection ends"
    );
    drop(send);
    server.shutdown().await;
}
