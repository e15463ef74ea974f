//! The memory budget: bytes held for peers (messages still arriving, unshared
//! outgoing frames) are capped per IP address (`max_held_bytes_per_ip`, 1008) and
//! per node (`max_held_bytes`, 1013). Before it, 1,000 connections from one
//! address each holding a 1 MiB − 4 KiB fragment pinned 2 GB. Here: connections
//! holding fragments are closed once their address's share (or the node's budget)
//! is spent, with a reason they can read; the count never exceeds the limit; other
//! clients keep working; and everything held comes back when the holders leave.

use std::time::Duration;

use framework::dispatch::Request;
use framework::protocol::{FrameFields, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::{any_port, eventually, RawWs, DEADLINE};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const KIB: usize = 1024;

async fn start(config: Config) -> AppHandle {
    App::new()
        .config(Config {
            // The sessions must not time out while the test looks at them.
            message_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            ..config
        })
        .register_custom_handler(200, bytes_asked)
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// Answers with as many bytes as the little-endian `u32` payload asks (≤ 1 MiB).
fn bytes_asked(ctx: Request) -> Vec<u8> {
    let n = ctx
        .body()
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    vec![7u8; (n as usize).min(1 << 20)]
}

/// Sends the first fragment (`len` bytes) of a message that never ends.
async fn hold(ws: &mut RawWs, len: usize) {
    let first = Frame::message(vec![7u8; len], OpCode::Data(Data::Binary), false);
    ws.ws.send(Message::Frame(first)).await.expect("send");
}

/// The close frame `ws` gets next, as (code, reason).
async fn closed_with(ws: &mut RawWs) -> (u16, String) {
    loop {
        match ws.next_message().await {
            Some(Message::Close(Some(c))) => return (u16::from(c.code), c.reason.to_string()),
            Some(Message::Close(None)) | None => panic!("closed without a reason"),
            Some(_) => continue,
        }
    }
}

async fn ping_works(ws: &mut RawWs) {
    let tx = uuid::Uuid::new_v4();
    let pong = ws
        .request(FrameFields::new(Opcode::Ping.0).transaction_id(Some(tx)))
        .await;
    assert_eq!(pong.transaction_id(), Some(tx));
}

/// What became of a held fragment.
enum Held {
    Counted,
    Refused(u16, String),
}

/// Sends a `fragment`-byte unfinished message on `ws` and waits until the server
/// counted it or closed the connection.
async fn try_hold(server: &AppHandle, ws: &mut RawWs, fragment: usize) -> Held {
    use futures_util::StreamExt;
    let before = server.node().held_bytes();
    hold(ws, fragment).await;
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            if server.node().held_bytes() >= before + fragment {
                return Held::Counted;
            }
            if let Ok(next) = tokio::time::timeout(Duration::from_millis(20), ws.ws.next()).await {
                match next {
                    Some(Ok(Message::Close(Some(c)))) => {
                        return Held::Refused(u16::from(c.code), c.reason.to_string())
                    }
                    Some(Ok(_)) => continue,
                    other => panic!("cut without a close frame: {other:?}"),
                }
            }
        }
    })
    .await;
    outcome.expect("counted or refused in time")
}

/// Opens connections that each hold a `fragment`-byte unfinished message until
/// one is refused; returns the holders and the refusal.
async fn fill(server: &AppHandle, fragment: usize, at_most: usize) -> (Vec<RawWs>, (u16, String)) {
    let mut holders = Vec::new();
    for _ in 0..at_most {
        let (mut ws, _) = RawWs::connect(server).await;
        match try_hold(server, &mut ws, fragment).await {
            Held::Counted => holders.push(ws),
            Held::Refused(code, reason) => return (holders, (code, reason)),
        }
    }
    panic!("{at_most} holders and none refused");
}

#[tokio::test]
async fn unfinished_messages_of_one_address_are_capped_at_its_share() {
    let server = start(Config {
        max_held_bytes_per_ip: 1024 * KIB,
        ..Config::default()
    })
    .await;
    let (holders, refusal) = fill(&server, 300 * KIB, 10).await;
    assert_eq!(
        holders.len(),
        3,
        "three 300 KiB fragments fit in 1 MiB, not four"
    );
    assert_eq!(
        refusal,
        (1008, "too much data held for this address".into())
    );
    assert!(server.node().held_bytes() <= 1024 * KIB);
    // Whole messages from the same address still go through.
    let (mut other, _) = RawWs::connect(&server).await;
    ping_works(&mut other).await;
    assert_eq!(server.node().memory_budget_closes(), 1);
    // Everything held comes back when the holders leave.
    drop(holders);
    eventually("held bytes released", DEADLINE, || {
        server.node().held_bytes() == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_node_budget_connections_are_told_to_try_again_later() {
    let server = start(Config {
        max_held_bytes: 512 * KIB,
        ..Config::default()
    })
    .await;
    let (holders, refusal) = fill(&server, 200 * KIB, 10).await;
    assert_eq!(holders.len(), 2);
    assert_eq!(refusal, (1013, "server busy: try again later".into()));
    let (mut other, _) = RawWs::connect(&server).await;
    ping_works(&mut other).await;
    drop(holders);
    eventually("held bytes released", DEADLINE, || {
        server.node().held_bytes() == 0
    })
    .await;
    // Once released, the budget serves again.
    let (mut ws, _) = RawWs::connect(&server).await;
    assert!(matches!(
        try_hold(&server, &mut ws, 200 * KIB).await,
        Held::Counted
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_single_frame_trickled_in_is_counted_and_bounded_by_message_timeout() {
    let server = App::new()
        .config(Config {
            message_timeout: Duration::from_millis(500),
            ping_interval: Duration::from_millis(100),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let (mut ws, _) = RawWs::connect(&server).await;
    // The header of a 512 KiB binary frame, then 1 KiB of it, then nothing.
    let mut frame = Frame::message(vec![1u8; 512 * KIB], OpCode::Data(Data::Binary), true);
    frame.header_mut().mask = Some([1, 2, 3, 4]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).unwrap();
    let raw = match ws.ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!(),
    };
    tokio::io::AsyncWriteExt::write_all(raw, &bytes[..KIB])
        .await
        .unwrap();
    eventually("the announced frame is counted", DEADLINE, || {
        server.node().held_bytes() >= 512 * KIB
    })
    .await;
    let started = tokio::time::Instant::now();
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "message took too long"));
    assert!(started.elapsed() < DEADLINE);
    eventually("released", DEADLINE, || server.node().held_bytes() == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn replies_a_client_never_reads_are_capped_at_its_share() {
    let server = start(Config {
        max_held_bytes_per_ip: 512 * KIB,
        // The per-session limit alone would allow 8 MiB.
        max_queued_bytes: 8 << 20,
        ..Config::default()
    })
    .await;
    let (mut greedy, _) = RawWs::connect_with_recv_buffer(&server, 4 * KIB as u32).await;
    let (mut fine, _) = RawWs::connect(&server).await;
    let size = (64 * KIB as u32).to_le_bytes();
    let request = FrameFields::new(200).payload(&size).encode();
    // 64 KiB replies to requests sent without reading: the socket fills, the
    // queue grows, and the address's share runs out long before 8 MiB.
    let closed = async {
        for _ in 0..400 {
            if greedy
                .ws
                .send(Message::Binary(request.clone()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, closed)
        .await
        .expect("sent or closed");
    eventually("the greedy session is closed", DEADLINE, || {
        server.node().memory_budget_closes() == 1
    })
    .await;
    let (code, reason) = closed_with(&mut greedy).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "too much data held for this address")
    );
    ping_works(&mut fine).await;
    eventually("released", DEADLINE, || server.node().held_bytes() == 0).await;
    server.shutdown().await;
}
