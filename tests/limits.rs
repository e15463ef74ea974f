//! Limits end to end: a slow consumer is closed without slowing anyone else, an
//! oversized message closes its connection with 1009, and the per-IP connection
//! limit refuses the upgrade with HTTP 429 until a slot frees up.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use framework::client::{Client, ClientError};
use framework::node::Node;
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::{App, Config};
use framework_tests::{
    client, eventually, expect_server_error, start, url, Ending, RawWs, DEADLINE,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

const QUEUE_LIMIT: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;
/// More than any kernel buffering plus the queue limit could ever absorb.
const MAX_BYTES_BEFORE_CLOSE: usize = 64 << 20;

fn small_queue() -> Config {
    Config {
        max_queued_bytes: QUEUE_LIMIT,
        ..Config::default()
    }
}

/// Whether the session `id` is closing or already gone.
fn closing_or_gone(node: &Node, id: Uuid) -> bool {
    node.hub().session(&id).is_none_or(|c| c.is_closing())
}

/// A 16 KiB payload whose first 4 bytes are the sequence number `n`.
fn chunk(n: u32) -> Vec<u8> {
    let mut p = vec![0xA5; CHUNK];
    p[..4].copy_from_slice(&n.to_be_bytes());
    p
}

/// The slow consumer starts reading at last, as soon as it was evicted: it reads
/// what was already on its way, then the 1008 close the server wrote after it, so
/// it can tell eviction from a network fault.
fn drain_evicted(mut slow: RawWs) -> tokio::task::JoinHandle<Ending> {
    tokio::spawn(async move { slow.drain(DEADLINE).await })
}

async fn assert_server_ended(ending: tokio::task::JoinHandle<Ending>) {
    match ending.await.expect("the drain task") {
        Ending::Close(code) => assert_eq!(code, Some(1008), "a slow consumer is closed with 1008"),
        Ending::Dropped => panic!("the slow consumer was cut without its 1008 close"),
        Ending::TimedOut => panic!("the server never ended the slow consumer's connection"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_closed_and_a_healthy_one_gets_everything_in_order() {
    let server = start(App::new().config(small_queue())).await;
    let node = server.node().clone();

    // The slow consumer: a tiny receive buffer, and it never reads after subscribing.
    let (mut slow, welcome) = RawWs::connect_with_recv_buffer(&server, 4096).await;
    let slow_id = welcome.receiver_id().unwrap();
    let ack = slow
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("firehose")
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    let healthy = client(&server).await;
    healthy.subscribe("firehose").await.unwrap();
    let publisher = client(&server).await;

    // Publish in lock step with the healthy subscriber (it is never more than one
    // message behind, far under its own queue limit) until the slow one is closed.
    let mut n = 0u32;
    let check = |n: u32, d: Option<framework::protocol::Frame>| {
        let d = d.unwrap_or_else(|| panic!("healthy subscriber lost message {n}"));
        assert_eq!(d.payload().len(), CHUNK);
        assert_eq!(&d.payload()[..4], &n.to_be_bytes(), "out of order");
    };
    let started = Instant::now();
    while !closing_or_gone(&node, slow_id) {
        assert!(
            (n as usize) * CHUNK < MAX_BYTES_BEFORE_CLOSE,
            "the slow consumer was not closed after {n} messages of {CHUNK} bytes"
        );
        publisher.publish_nowait("firehose", &chunk(n)).unwrap();
        check(n, healthy.recv_timeout(DEADLINE).await);
        n += 1;
    }
    let overflowed_after = n;
    let ending = drain_evicted(slow);
    // The healthy subscriber keeps receiving everything, in order.
    for _ in 0..64 {
        publisher.publish_nowait("firehose", &chunk(n)).unwrap();
        check(n, healthy.recv_timeout(DEADLINE).await);
        n += 1;
    }
    publisher.publish("firehose", &chunk(n)).await.unwrap();
    check(n, healthy.recv_timeout(DEADLINE).await);

    eventually("the slow consumer leaves the hub", DEADLINE, || {
        node.hub().session(&slow_id).is_none()
    })
    .await;
    assert_eq!(node.hub().subscriber_count("firehose"), 1);
    assert_eq!(node.hub().session_count(), 2);
    assert_server_ended(ending).await;
    healthy
        .ping()
        .await
        .expect("the healthy subscriber is still connected");
    assert!(healthy.close_frame().is_none());
    eprintln!(
        "slow consumer closed after {overflowed_after} messages ({} KiB) in {:?}",
        overflowed_after as usize * CHUNK / 1024,
        started.elapsed()
    );
    assert!(
        node.metrics().slow_consumer_closes.load(Relaxed) >= 1,
        "NodeMetrics::slow_consumer_closes must count the slow consumer closed with 1008"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_full_queue_acks_the_sender_and_closes_the_receiver() {
    let server = start(App::new().config(small_queue())).await;
    let node = server.node().clone();
    let (slow, welcome) = RawWs::connect_with_recv_buffer(&server, 4096).await;
    let slow_id = welcome.receiver_id().unwrap();
    let sender = client(&server).await;

    let mut n = 0u32;
    while !closing_or_gone(&node, slow_id) {
        assert!(
            (n as usize) * CHUNK < MAX_BYTES_BEFORE_CLOSE,
            "the slow receiver was not closed after {n} sends"
        );
        sender
            .send_to(slow_id, &chunk(n))
            .await
            .expect("the sender gets its Ack even when the receiver is slow");
        n += 1;
    }
    let ending = drain_evicted(slow);
    // Once the receiver is gone, sending to it is NotFound.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match sender.send_to(slow_id, b"x").await {
            Ok(()) => assert!(Instant::now() < deadline, "receiver never went away"),
            Err(e) => {
                expect_server_error(Err::<(), _>(e), ErrorCode::NotFound);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_server_ended(ending).await;
    sender.ping().await.unwrap();
    assert_eq!(node.hub().session_count(), 1);
    assert!(node.metrics().slow_consumer_closes.load(Relaxed) >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection_with_1009() {
    const LIMIT: usize = 64 * 1024;
    let server = start(App::new().config(Config {
        max_message_size: LIMIT,
        ..Config::default()
    }))
    .await;
    let node = server.node().clone();
    let bystander = client(&server).await;
    bystander.subscribe("room").await.unwrap();

    // Just under the limit is fine.
    let (mut raw, welcome) = RawWs::connect(&server).await;
    let me = welcome.receiver_id().unwrap();
    let big = vec![7u8; LIMIT - 1024];
    let d = raw
        .request(
            FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(me))
                .payload(&big),
        )
        .await;
    assert_eq!(d.payload().len(), big.len());

    // 100 KiB in one binary message: closed with 1009.
    raw.send_binary(vec![0u8; 100 * 1024]).await;
    assert_eq!(raw.close_code().await, Some(1009));
    assert_eq!(node.metrics().oversized_closes.load(Relaxed), 1);

    // Same for a text message, and for a message whose fragments are each under the
    // limit but whose total is not.
    let (mut text, _) = RawWs::connect(&server).await;
    text.send(Message::text("t".repeat(100 * 1024))).await;
    assert_eq!(text.close_code().await, Some(1009));
    let (mut fragmented, _) = RawWs::connect(&server).await;
    let part = vec![1u8; 40 * 1024];
    fragmented
        .send(Message::Frame(WsFrame::message(
            part.clone(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await;
    fragmented
        .send(Message::Frame(WsFrame::message(
            part,
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    assert_eq!(fragmented.close_code().await, Some(1009));
    assert_eq!(node.metrics().oversized_closes.load(Relaxed), 3);

    // Nobody else is affected.
    eventually("closed sessions leave the hub", DEADLINE, || {
        node.hub().session_count() == 1
    })
    .await;
    bystander.ping().await.unwrap();
    bystander.publish("room", b"fine").await.unwrap();
    let d = bystander.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(&d.payload()[..], b"fine");
    assert!(bystander.close_frame().is_none());
    server.shutdown().await;
}

/// Whether an upgrade attempt was refused with HTTP 429.
fn is_429(result: &Result<Client, ClientError>) -> bool {
    matches!(result, Err(ClientError::Ws(WsError::Http(r))) if r.status().as_u16() == 429)
}

#[tokio::test]
async fn the_per_ip_limit_refuses_upgrades_with_429_until_a_slot_frees() {
    let server = start(App::new().config(Config {
        max_connections_per_ip: 2,
        ..Config::default()
    }))
    .await;
    let node = server.node().clone();
    let url = url(&server);
    let first = client(&server).await;
    let (second, _) = RawWs::connect(&server).await;

    let third = Client::connect(&url).await;
    assert!(is_429(&third), "third connection: {third:?}");
    let raw = tokio_tungstenite::connect_async(url.as_str()).await;
    match raw {
        Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }
    assert_eq!(node.hub().session_count(), 2);
    assert!(node.metrics().handshakes_refused.load(Relaxed) >= 2);
    first
        .ping()
        .await
        .expect("existing connections are unaffected");

    // Once one closes, a new upgrade works again.
    first.close();
    let deadline = Instant::now() + DEADLINE;
    let replacement = loop {
        let attempt = Client::connect(&url).await;
        match attempt {
            Ok(c) => break c,
            Err(_) if is_429(&attempt) && Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => panic!("no slot freed after a close: {e:?}"),
        }
    };
    replacement.ping().await.unwrap();

    // And the limit still holds.
    assert!(is_429(&Client::connect(&url).await));
    drop(second);
    server.shutdown().await;
}

#[tokio::test]
async fn membership_limits_are_too_large_and_leave_state_unchanged() {
    let server = start(App::new().config(Config {
        max_channels_per_session: 2,
        max_subscribers_per_channel: 2,
        ..Config::default()
    }))
    .await;
    let hub = server.node().hub().clone();
    let a = client(&server).await;
    let b = client(&server).await;
    let c = client(&server).await;

    // Channels per session.
    a.subscribe("one").await.unwrap();
    a.subscribe("two").await.unwrap();
    expect_server_error(a.subscribe("three").await, ErrorCode::TooLarge);
    assert_eq!(hub.subscriber_count("three"), 0);
    a.subscribe("one")
        .await
        .expect("re-joining a joined channel is a no-op, even at the limit");
    a.unsubscribe("two").await.unwrap();
    a.subscribe("three").await.expect("a slot freed up");

    // Subscribers per channel.
    b.subscribe("one").await.unwrap();
    expect_server_error(c.subscribe("one").await, ErrorCode::TooLarge);
    assert_eq!(hub.subscriber_count("one"), 2);
    b.publish("one", b"x").await.unwrap();
    for s in [&a, &b] {
        assert_eq!(&s.recv_timeout(DEADLINE).await.unwrap().payload()[..], b"x");
    }
    b.unsubscribe("one").await.unwrap();
    c.subscribe("one").await.expect("a slot freed up");
    assert_eq!(hub.subscriber_count("one"), 2);
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::TooLarge), 2);
    server.shutdown().await;
}
