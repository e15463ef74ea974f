//! Holes an attacker (or a browser) found, each reproduced on loopback and shown
//! closed: server-API bodies are authenticated before they are read and read
//! within a size and a time limit; plain HTTP connections count against the per-IP
//! limit and over it every request is answered 429; a node-wide connection cap is
//! answered 503, never left hanging; quiet sessions are pinged, so a client that
//! only listens stays connected, and a peer that answers no ping is closed.

use std::net::SocketAddr;
use std::time::Duration;

use framework::client::Client;
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, read_response, Request};
use framework_tests::{any_port, url, RawWs, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn start_service(config: Config) -> AppHandle {
    App::new()
        .config(config)
        .run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// Sends a request head announcing a `content_length` body, then `sent` bytes of
/// it, and reads the response without ever sending the rest.
async fn partial_body(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    content_length: usize,
    sent: usize,
) -> http::Response {
    tokio::time::timeout(DEADLINE, async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let mut head = format!("POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.expect("head");
        tcp.write_all(&vec![b' '; sent]).await.expect("body");
        read_response(&mut tcp).await
    })
    .await
    .expect("an answer without the rest of the body")
}

#[tokio::test]
async fn api_bodies_are_authenticated_before_they_are_read() {
    // API off: 404 at once, whatever the body announces.
    let off = start_service(Config::default()).await;
    let r = partial_body(off.service_addr(), &[], 2_000_000, 10).await;
    assert_eq!(r.status, 404);
    off.shutdown().await;

    let server = start_service(Config {
        api_key: Some("secret".into()),
        max_api_body: 1024,
        body_timeout: Duration::from_millis(400),
        ..Config::default()
    })
    .await;
    let addr = server.service_addr();
    // No key, or a wrong one: 401 before the (never sent) body.
    assert_eq!(partial_body(addr, &[], 2_000_000, 10).await.status, 401);
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(partial_body(addr, &wrong, 2_000_000, 10).await.status, 401);
    // The right key (scheme in any case), a body over max_api_body: 413.
    let right = [("Authorization", "bEaReR secret")];
    assert_eq!(
        partial_body(addr, &right, 2_000_000, 2048).await.status,
        413
    );
    // The right key, a body that stops arriving: 408 at body_timeout.
    assert_eq!(partial_body(addr, &right, 500, 10).await.status, 408);
    // And a whole, small, authorized body still works.
    let ok = http::send(
        addr,
        Request::post_json("/api/publish", r#"{"channel":"news","payload":"aGk="}"#)
            .header("X-Api-Key", "secret"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_counts_against_the_per_ip_limit_and_is_answered_429() {
    let server = start_service(Config {
        max_connections_per_ip: 2,
        ..Config::default()
    })
    .await;
    let addr = server.service_addr();
    // Two idle HTTP connections hold the address's two slots.
    let held = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let probe = async {
        loop {
            let r = http::get(addr, "/healthz").await;
            if r.status == 429 {
                return r;
            }
            // The held connections may not be accepted yet: try again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let r = tokio::time::timeout(DEADLINE, probe).await.expect("a 429");
    assert!(r.text().contains("too many connections"), "{}", r.text());
    drop(held);
    let healthy = async {
        loop {
            if http::get(addr, "/healthz").await.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, healthy)
        .await
        .expect("served again once the slots are free");
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_node_connection_cap_every_request_is_answered_503() {
    let server = App::new()
        .config(Config {
            max_connections: 2,
            ..Config::default()
        })
        .run_service(any_port())
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let a = Client::connect(&format!("ws://{}/", server.websocket_addr()))
        .await
        .unwrap();
    let b = Client::connect(&format!("ws://{}/ws", server.service_addr()))
        .await
        .unwrap();
    // Both listeners count: a third connection on either is answered, with 503.
    for addr in [server.service_addr(), server.websocket_addr()] {
        let r = http::get(addr, "/healthz").await;
        assert_eq!(r.status, 503, "{addr}");
        assert!(r.text().contains("full"));
    }
    let refused = Client::connect(&format!("ws://{}/", server.websocket_addr())).await;
    assert!(refused.is_err(), "an upgrade past the cap is refused");
    assert!(
        a.ping().await.is_ok() && b.ping().await.is_ok(),
        "the admitted are served"
    );
    a.close();
    let again = async {
        loop {
            if http::get(server.service_addr(), "/healthz").await.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, again)
        .await
        .expect("room again");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_only_listens_is_pinged_and_stays() {
    let server = App::new()
        .config(Config {
            idle_timeout: Duration::from_millis(800),
            ping_interval: Duration::from_millis(150),
            pong_timeout: Duration::from_secs(5),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let mut raw = RawWs::connect(&server).await.0;
    // The client sends nothing of its own for three idle timeouts; it answers the
    // server's pings (tungstenite replies while reading), and sees them.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(2400);
    let mut pings = 0;
    while tokio::time::Instant::now() < quiet_until {
        match tokio::time::timeout_at(quiet_until, raw.next_message()).await {
            Ok(Some(Message::Ping(_))) => pings += 1,
            Ok(Some(Message::Close(c))) => panic!("closed while listening: {c:?}"),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("the connection ended"),
            Err(_) => break,
        }
    }
    assert!(
        pings >= 2,
        "the server pinged the quiet client ({pings} pings)"
    );
    let tx = uuid::Uuid::new_v4();
    let pong = raw
        .request(
            framework::protocol::FrameFields::new(framework::protocol::Opcode::Ping.0)
                .transaction_id(Some(tx)),
        )
        .await;
    assert_eq!(pong.transaction_id(), Some(tx), "still served");
    server.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_closed() {
    let server = App::new()
        .config(Config {
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_millis(300),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::connect_async(url(&server))
        .await
        .unwrap();
    let mut raw = RawWs { ws };
    // Not reading means not answering: the pings go unanswered.
    let sessions = || server.node().hub().session_count();
    framework_tests::eventually("the silent peer's session closes", DEADLINE, || {
        sessions() == 0
    })
    .await;
    // What it finds when it reads at last: the pings, then the reason.
    let mut reason = None;
    while let Some(m) = raw.next_message().await {
        if let Message::Close(Some(c)) = m {
            reason = Some((u16::from(c.code), c.reason.to_string()));
            break;
        }
    }
    assert_eq!(reason, Some((1000, "ping timeout".to_string())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_message_that_never_ends_is_closed_at_message_timeout() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    let server = App::new()
        .config(Config {
            message_timeout: Duration::from_millis(600),
            ping_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(60),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let (mut slow, _) = RawWs::connect(&server).await;
    let (mut fine, _) = RawWs::connect(&server).await;
    // The first 64 KiB of a message that never gets its last fragment, then pings
    // (which keep the session active, and once kept the half message forever).
    let first = Frame::message(vec![7u8; 64 << 10], OpCode::Data(Data::Binary), false);
    slow.ws.send(Message::Frame(first)).await.unwrap();
    // A whole fragmented message on another connection is fine.
    let part = |fin, op, data: &[u8]| Frame::message(data.to_vec(), op, fin);
    let frame = framework::protocol::FrameFields::new(framework::protocol::Opcode::Ping.0)
        .transaction_id(Some(uuid::Uuid::new_v4()))
        .encode();
    let (a, b) = frame.split_at(frame.len() / 2);
    fine.ws
        .send(Message::Frame(part(false, OpCode::Data(Data::Binary), a)))
        .await
        .unwrap();
    fine.ws
        .send(Message::Frame(part(true, OpCode::Data(Data::Continue), b)))
        .await
        .unwrap();
    assert_eq!(
        fine.next_frame().await.expect("a Pong").opcode(),
        framework::protocol::Opcode::Pong.0
    );

    let started = tokio::time::Instant::now();
    let closed = async {
        loop {
            let _ = slow.ws.send(Message::Ping(Default::default())).await;
            match tokio::time::timeout(Duration::from_millis(100), slow.next_message()).await {
                Ok(Some(Message::Close(Some(c)))) => {
                    return (u16::from(c.code), c.reason.to_string())
                }
                Ok(None) => panic!("cut without a close frame"),
                _ => {}
            }
        }
    };
    let (code, reason) = tokio::time::timeout(DEADLINE, closed)
        .await
        .expect("closed");
    assert_eq!((code, reason.as_str()), (1008, "message took too long"));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before message_timeout"
    );
    // The other connection is untouched.
    let tx = uuid::Uuid::new_v4();
    let pong = fine
        .request(
            framework::protocol::FrameFields::new(framework::protocol::Opcode::Ping.0)
                .transaction_id(Some(tx)),
        )
        .await;
    assert_eq!(pong.transaction_id(), Some(tx));
    server.shutdown().await;
}

#[tokio::test]
async fn permessage_deflate_is_never_negotiated_and_compressed_frames_are_refused() {
    use tokio::io::AsyncReadExt;
    let server = start_service(Config::default()).await;
    let addr = server.service_addr();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let response = read_response(&mut tcp).await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-extensions"),
        None,
        "no extension is accepted: a deflate bomb has nothing to inflate"
    );
    // A frame claiming compression (RSV1) is a protocol error: 1002.
    // Masked with 1, 2, 3, 4: the payload is four zero bytes.
    let frame = [0x80 | 0x40 | 0x2, 0x80 | 4, 1, 2, 3, 4, 1, 2, 3, 4];
    tcp.write_all(&frame).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut got)).await;
    // Past the Welcome frame, the close frame: 0x88, length, code 1002.
    let close = got
        .windows(4)
        .position(|w| w[0] == 0x88 && w[2..4] == 1002u16.to_be_bytes())
        .is_some();
    assert!(close, "closed with 1002, got {got:?}");
    server.shutdown().await;
}
