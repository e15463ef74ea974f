//! Delivery at scale and in order: one connection's 1,000 frames arrive in order,
//! pipelined requests are answered in request order, a channel fans out to 300
//! subscribers without loss, and a broadcast reaches 1,000 concurrent connections.

use framework::client::Client;
use framework::dispatch::Request;
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::{App, HandlerError, Reply};
use framework_tests::{client, start, url, RawWs, DEADLINE};
use futures_util::StreamExt;
use tokio::task::JoinSet;
use uuid::Uuid;

fn seq(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

fn seq_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload.try_into().expect("a 4-byte sequence number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connections_thousand_publishes_arrive_in_order() {
    const N: u32 = 1000;
    let server = start(App::new()).await;
    let sub = client(&server).await;
    let publisher = client(&server).await;
    sub.subscribe("ordered").await.unwrap();

    for n in 0..N {
        publisher.publish_nowait("ordered", &seq(n)).unwrap();
    }
    // The last one is acked: every earlier frame was handled before it.
    publisher.publish("ordered", &seq(N)).await.unwrap();

    for expected in 0..=N {
        let d = sub
            .recv_timeout(DEADLINE)
            .await
            .unwrap_or_else(|| panic!("delivery {expected} missing"));
        assert_eq!(d.opcode(), Opcode::Publish.0);
        assert_eq!(seq_of(&d.payload()), expected, "deliveries out of order");
        assert_eq!(d.emitter_id(), Some(publisher.session_id()));
    }
    server.shutdown().await;
}

/// Takes longer the larger its first payload byte is (by yielding), so a
/// concurrent dispatcher would reorder replies.
async fn slow_echo(ctx: Request) -> Reply {
    let turns = ctx.body().first().copied().unwrap_or(0);
    for _ in 0..turns {
        tokio::task::yield_now().await;
    }
    Reply::payload(ctx.body().clone())
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_request_order() {
    let server = start(
        App::new()
            .register_custom_handler(250, slow_echo)
            .register_custom_handler(251, |ctx: Request| Reply::payload(ctx.body().clone()))
            .register_custom_handler(252, |_ctx: Request| -> Result<(), HandlerError> {
                Err(HandlerError::invalid_argument("no"))
            }),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;

    // 400 requests of mixed kinds, all sent before reading any reply.
    let mut expected = Vec::new();
    for i in 0..400u32 {
        let tx = Uuid::new_v4();
        let payload = [(50 - (i % 50)) as u8, (i % 7) as u8];
        let (fields, answer) = match i % 5 {
            0 => (FrameFields::new(250).payload(&payload), 250),
            1 => (FrameFields::new(251).payload(&payload), 251),
            2 => (FrameFields::new(Opcode::Ping.0), Opcode::Pong.0),
            3 => (FrameFields::new(252), Opcode::Error.0),
            _ => (
                FrameFields::new(Opcode::Subscribe.0)
                    .channel("c")
                    .requires_ack(true),
                Opcode::Ack.0,
            ),
        };
        raw.send_fields(fields.transaction_id(Some(tx))).await;
        expected.push((tx, answer));
    }
    for (i, (tx, answer)) in expected.into_iter().enumerate() {
        let r = raw.next_frame().await.expect("a reply");
        assert_eq!(r.transaction_id(), Some(tx), "reply {i} out of order");
        assert_eq!(r.opcode(), answer, "reply {i}");
        if answer == Opcode::Error.0 {
            assert_eq!(r.error_code(), ErrorCode::InvalidArgument);
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_300_subscribers_loses_nothing() {
    const SUBSCRIBERS: usize = 300;
    const MESSAGES: u32 = 200;
    let server = start(App::new()).await;
    let url = url(&server);
    let subs: Vec<Client> = futures_util::stream::iter(0..SUBSCRIBERS)
        .map(|_| {
            let url = url.clone();
            async move {
                let c = Client::connect(&url).await.expect("connect");
                c.subscribe("fan").await.expect("subscribe");
                c
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(server.node().hub().subscriber_count("fan"), SUBSCRIBERS);

    let mut checks = JoinSet::new();
    for sub in subs {
        checks.spawn(async move {
            for expected in 0..MESSAGES {
                let d = sub
                    .recv_timeout(DEADLINE)
                    .await
                    .unwrap_or_else(|| panic!("message {expected} lost"));
                assert_eq!(d.channel(), Some("fan"));
                assert_eq!(seq_of(&d.payload()), expected, "out of order");
            }
            sub
        });
    }

    let publisher = client(&server).await;
    for n in 0..MESSAGES - 1 {
        publisher.publish_nowait("fan", &seq(n)).unwrap();
    }
    publisher.publish("fan", &seq(MESSAGES - 1)).await.unwrap();

    let mut done = Vec::new();
    while let Some(result) = checks.join_next().await {
        done.push(result.expect("every subscriber receives every message, in order"));
    }
    assert_eq!(done.len(), SUBSCRIBERS);
    // Nobody was closed as a slow consumer on the way.
    assert_eq!(server.node().hub().subscriber_count("fan"), SUBSCRIBERS);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_1000_concurrent_connections() {
    const CONNECTIONS: usize = 1000;
    let server = start(App::new()).await;
    let conns: Vec<RawWs> = futures_util::stream::iter(0..CONNECTIONS)
        .map(|_| async { RawWs::connect(&server).await.0 })
        .buffer_unordered(64)
        .collect()
        .await;
    let sender = client(&server).await;
    assert_eq!(server.node().hub().session_count(), CONNECTIONS + 1);

    sender
        .broadcast(b"everyone")
        .await
        .expect("broadcast acked");
    let emitter = Some(sender.session_id());
    let mut checks = JoinSet::new();
    for mut raw in conns {
        checks.spawn(async move {
            let d = raw.next_frame().await.expect("the broadcast");
            assert_eq!(d.opcode(), Opcode::Broadcast.0);
            assert_eq!(&d.payload()[..], b"everyone");
            assert_eq!(d.emitter_id(), emitter);
            raw
        });
    }
    let own = sender.recv_timeout(DEADLINE).await.expect("sender's copy");
    assert_eq!(own.opcode(), Opcode::Broadcast.0);
    assert_eq!(own.emitter_id(), emitter);
    let mut received = 0;
    while let Some(result) = checks.join_next().await {
        result.expect("every connection receives the broadcast");
        received += 1;
    }
    assert_eq!(received, CONNECTIONS);
    server.shutdown().await;
}
