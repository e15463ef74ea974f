//! Built-in opcodes end to end, over real sockets: every success and failure path of
//! protocol v1 (`Welcome`, `Ping`, `Subscribe`, `Unsubscribe`, `Publish`, `Send`,
//! `Broadcast`, unknown and server-only opcodes, and undecodable input).
//!
//! Absence of a frame (no `Ack`, no second delivery) is never asserted by waiting:
//! a later "sentinel" frame of the same connection must arrive first instead, which
//! the per-connection ordering guarantee makes deterministic.

use std::time::Duration;

use framework::protocol::{fbs, ErrorCode, Frame, FrameFields, Opcode};
use framework::App;
use framework_tests::{client, expect_server_error, start, RawWs, DEADLINE};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Asserts `frame` is an `Error` with `code` correlated to `tx`.
#[track_caller]
fn assert_error(frame: &Frame, code: ErrorCode, tx: Option<Uuid>) {
    assert_eq!(
        frame.opcode(),
        Opcode::Error.0,
        "expected Error, got {frame:?}"
    );
    assert_eq!(frame.error_code(), code, "error code of {frame:?}");
    assert_eq!(frame.transaction_id(), tx, "transaction id of {frame:?}");
    let message = frame.error_message().unwrap_or_default();
    assert!(!message.is_empty(), "an Error carries a message");
}

/// Asserts `frame` is a `Pong` for the ping with `tx`.
#[track_caller]
fn assert_pong(frame: &Frame, tx: Uuid) {
    assert_eq!(
        frame.opcode(),
        Opcode::Pong.0,
        "expected Pong, got {frame:?}"
    );
    assert_eq!(frame.transaction_id(), Some(tx));
}

fn ping(tx: Uuid) -> FrameFields<'static> {
    FrameFields::new(Opcode::Ping.0).transaction_id(Some(tx))
}

/// Sends a ping and asserts the next frame is its pong: proves that nothing else was
/// queued for this connection before it.
async fn assert_nothing_pending(raw: &mut RawWs) {
    let tx = Uuid::new_v4();
    let pong = raw.request(ping(tx)).await;
    assert_pong(&pong, tx);
}

#[tokio::test]
async fn welcome_carries_the_session_id_and_node_id_and_nothing_else() {
    let node_id = Uuid::new_v4();
    let server = start(App::new().node_id(node_id)).await;
    let (_a, wa) = RawWs::connect(&server).await;
    let (_b, wb) = RawWs::connect(&server).await;
    for w in [&wa, &wb] {
        assert_eq!(w.opcode(), Opcode::Welcome.0);
        let id = w.receiver_id().expect("Welcome carries receiver_id");
        assert!(!id.is_nil());
        assert!(
            server.node().hub().session(&id).is_some(),
            "receiver_id is a live session id of this node"
        );
        assert_eq!(w.node_id(), Some(node_id));
        assert_eq!(w.transaction_id(), None);
        assert_eq!(w.emitter_id(), None);
        assert_eq!(w.channel(), None);
        assert!(!w.has_payload());
        assert_eq!(w.token(), None);
        assert_eq!(w.error_code(), ErrorCode::None);
        assert_eq!(w.error_message(), None);
    }
    assert_ne!(wa.receiver_id(), wb.receiver_id());
    assert_eq!(server.node().hub().session_count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn ping_is_answered_by_pong_with_transaction_and_trace_ids() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;

    let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let pong = raw.request(ping(tx).trace_id(Some(trace))).await;
    assert_pong(&pong, tx);
    assert_eq!(pong.trace_id(), Some(trace), "the ping's trace id is kept");
    assert_eq!(pong.error_code(), ErrorCode::None);

    // Without a trace id, the server creates one (a different one per request).
    let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
    let p1 = raw.request(ping(t1)).await;
    let p2 = raw.request(ping(t2)).await;
    assert_pong(&p1, t1);
    assert_pong(&p2, t2);
    let (c1, c2) = (p1.trace_id().unwrap(), p2.trace_id().unwrap());
    assert!(!c1.is_nil() && !c2.is_nil());
    assert_ne!(c1, c2, "each request gets its own trace id");

    // Without a transaction id: still a Pong.
    let pong = raw.request(FrameFields::new(Opcode::Ping.0)).await;
    assert_eq!(pong.opcode(), Opcode::Pong.0);
    assert_eq!(pong.transaction_id(), None);

    // requires_ack: a Pong only, never an extra Ack; the payload is not echoed.
    let tx = Uuid::new_v4();
    let pong = raw
        .request(ping(tx).requires_ack(true).payload(b"echo?"))
        .await;
    assert_pong(&pong, tx);
    assert!(!pong.has_payload(), "the ping's payload is not echoed");
    assert_nothing_pending(&mut raw).await;

    // The Rust client's ping works too.
    let c = client(&server).await;
    c.ping().await.expect("client ping");
    server.shutdown().await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe_ack_only_when_asked() {
    let server = start(App::new()).await;
    let hub = server.node().hub().clone();
    let (mut raw, _) = RawWs::connect(&server).await;

    // Without requires_ack: no Ack, but the subscription takes effect.
    let sub = FrameFields::new(Opcode::Subscribe.0)
        .channel("quiet")
        .transaction_id(Some(Uuid::new_v4()));
    raw.send_fields(sub).await;
    assert_nothing_pending(&mut raw).await;
    assert_eq!(hub.subscriber_count("quiet"), 1);

    // With requires_ack: an Ack carrying the transaction id and the trace id.
    let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let ack = raw
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("loud")
                .transaction_id(Some(tx))
                .trace_id(Some(trace))
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    assert_eq!(ack.transaction_id(), Some(tx));
    assert_eq!(ack.trace_id(), Some(trace));
    assert_eq!(hub.subscriber_count("loud"), 1);

    // The silent subscription really delivers.
    let publisher = client(&server).await;
    publisher.publish("quiet", b"q").await.unwrap();
    let d = raw.next_frame().await.expect("delivery");
    assert_eq!(d.opcode(), Opcode::Publish.0);
    assert_eq!(d.channel(), Some("quiet"));

    // Unsubscribe without requires_ack: no Ack, takes effect.
    let unsub = FrameFields::new(Opcode::Unsubscribe.0)
        .channel("quiet")
        .transaction_id(Some(Uuid::new_v4()));
    raw.send_fields(unsub).await;
    assert_nothing_pending(&mut raw).await;
    assert_eq!(hub.subscriber_count("quiet"), 0);

    // Unsubscribe with requires_ack: Ack.
    let tx = Uuid::new_v4();
    let ack = raw
        .request(
            FrameFields::new(Opcode::Unsubscribe.0)
                .channel("loud")
                .transaction_id(Some(tx))
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    assert_eq!(ack.transaction_id(), Some(tx));
    assert_eq!(hub.subscriber_count("loud"), 0);
    assert_eq!(hub.channel_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn subscribing_twice_is_a_no_op_one_delivery_not_two() {
    let server = start(App::new()).await;
    let sub = client(&server).await;
    let publisher = client(&server).await;
    sub.subscribe("room").await.unwrap();
    sub.subscribe("room")
        .await
        .expect("second subscribe is acked");
    assert_eq!(server.node().hub().subscriber_count("room"), 1);

    publisher.publish("room", b"one").await.unwrap();
    publisher.publish("room", b"two").await.unwrap();
    let first = sub.recv_timeout(DEADLINE).await.expect("delivery");
    let second = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(&first.payload()[..], b"one");
    assert_eq!(
        &second.payload()[..],
        b"two",
        "a second Subscribe must not duplicate deliveries"
    );

    // And a single Unsubscribe leaves the channel entirely.
    sub.unsubscribe("room").await.unwrap();
    assert_eq!(server.node().hub().subscriber_count("room"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn unsubscribing_a_channel_not_joined_is_a_no_op() {
    let server = start(App::new()).await;
    let sub = client(&server).await;
    let publisher = client(&server).await;
    sub.unsubscribe("never-joined")
        .await
        .expect("unsubscribing a channel not joined is acked, not an error");
    assert_eq!(server.node().hub().channel_count(), 0);

    // Leaving one channel leaves the others alone, and stops its deliveries.
    sub.subscribe("room").await.unwrap();
    sub.subscribe("sentinel").await.unwrap();
    sub.unsubscribe("elsewhere").await.unwrap();
    sub.unsubscribe("room").await.unwrap();
    publisher.publish("room", b"not for you").await.unwrap();
    publisher.publish("sentinel", b"s").await.unwrap();
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(
        d.channel(),
        Some("sentinel"),
        "no delivery after Unsubscribe"
    );
    assert_eq!(server.node().hub().subscriber_count("sentinel"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn publish_delivery_carries_exactly_the_contract_fields() {
    let server = start(App::new()).await;
    let sub = client(&server).await;
    let publisher = client(&server).await;
    sub.subscribe("news").await.unwrap();
    publisher.subscribe("news").await.unwrap();

    let (fake, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let ack = publisher
        .call(
            FrameFields::new(Opcode::Publish.0)
                .channel("news")
                .payload(b"\x00data\xff")
                .emitter_id(Some(fake))
                .receiver_id(Some(fake))
                .token("header.payload.signature")
                .trace_id(Some(trace))
                .span_id(77)
                .requires_ack(true),
        )
        .await
        .expect("publish acked");
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    assert_eq!(ack.trace_id(), Some(trace));

    // The publisher is subscribed too, so it receives its own publish.
    for c in [&sub, &publisher] {
        let d = c.recv_timeout(DEADLINE).await.expect("delivery");
        assert_eq!(d.opcode(), Opcode::Publish.0);
        assert_eq!(d.channel(), Some("news"));
        assert_eq!(&d.payload()[..], b"\x00data\xff");
        assert_eq!(
            d.emitter_id(),
            Some(publisher.session_id()),
            "emitter_id is set by the server, the client's value is ignored"
        );
        assert_eq!(d.trace_id(), Some(trace), "the request's trace id is kept");
        assert_eq!(d.token(), None, "a token is never forwarded");
        assert_eq!(
            d.transaction_id(),
            None,
            "the sender's transaction id is not forwarded"
        );
        assert_eq!(d.receiver_id(), None);
        assert_eq!(d.error_code(), ErrorCode::None);
    }

    // A publisher that is not subscribed does not receive its own publish.
    let outsider = client(&server).await;
    outsider.subscribe("sentinel").await.unwrap();
    outsider.publish("news", b"from outside").await.unwrap();
    outsider.publish("sentinel", b"s").await.unwrap();
    let d = outsider.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.channel(), Some("sentinel"));
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.emitter_id(), Some(outsider.session_id()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_created_trace_id_is_on_every_frame_the_request_causes() {
    let server = start(App::new()).await;
    let sub = client(&server).await;
    let publisher = client(&server).await;
    sub.subscribe("t").await.unwrap();
    let ack = publisher
        .call(
            FrameFields::new(Opcode::Publish.0)
                .channel("t")
                .payload(b"x")
                .requires_ack(true),
        )
        .await
        .unwrap();
    let trace = ack
        .trace_id()
        .expect("the Ack carries the created trace id");
    assert!(!trace.is_nil());
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.trace_id(), Some(trace));

    // Same for Send and Broadcast.
    let ack = publisher
        .call(
            FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(sub.session_id()))
                .requires_ack(true),
        )
        .await
        .unwrap();
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.trace_id(), ack.trace_id());
    assert!(d.trace_id().is_some());
    let ack = publisher
        .call(FrameFields::new(Opcode::Broadcast.0).requires_ack(true))
        .await
        .unwrap();
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.opcode(), Opcode::Broadcast.0);
    assert_eq!(d.trace_id(), ack.trace_id());
    assert!(d.trace_id().is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn publish_send_and_broadcast_ack_only_when_asked() {
    let server = start(App::new()).await;
    let (mut raw, welcome) = RawWs::connect(&server).await;
    let me = welcome.receiver_id().unwrap();
    let sub = raw
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("self")
                .requires_ack(true),
        )
        .await;
    assert_eq!(sub.opcode(), Opcode::Ack.0);

    let cases = [
        FrameFields::new(Opcode::Publish.0)
            .channel("self")
            .payload(b"p"),
        FrameFields::new(Opcode::Send.0)
            .receiver_id(Some(me))
            .payload(b"s"),
        FrameFields::new(Opcode::Broadcast.0).payload(b"b"),
    ];
    for fields in cases {
        let opcode = fields.opcode;
        let tx = Uuid::new_v4();
        // Without requires_ack: the delivery (to ourselves), then nothing.
        let d = raw.request(fields.clone().transaction_id(Some(tx))).await;
        assert_eq!(d.opcode(), opcode, "a delivery to the sender");
        assert_eq!(d.emitter_id(), Some(me));
        assert_eq!(d.transaction_id(), None);
        assert_nothing_pending(&mut raw).await;

        // With requires_ack: the delivery, then the Ack.
        let tx = Uuid::new_v4();
        let d = raw
            .request(fields.transaction_id(Some(tx)).requires_ack(true))
            .await;
        assert_eq!(d.opcode(), opcode);
        let ack = raw.next_frame().await.expect("ack");
        assert_eq!(ack.opcode(), Opcode::Ack.0, "opcode {opcode}");
        assert_eq!(ack.transaction_id(), Some(tx));
        assert_nothing_pending(&mut raw).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn send_delivers_to_exactly_one_session() {
    let server = start(App::new()).await;
    let a = client(&server).await;
    let b = client(&server).await;
    let c = client(&server).await;

    let (fake, trace) = (Uuid::new_v4(), Uuid::new_v4());
    a.call(
        FrameFields::new(Opcode::Send.0)
            .receiver_id(Some(b.session_id()))
            .emitter_id(Some(fake))
            .payload(b"direct")
            .token("secret")
            .channel("not-a-channel-send")
            .trace_id(Some(trace))
            .requires_ack(true),
    )
    .await
    .expect("send acked");
    let d = b.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.opcode(), Opcode::Send.0);
    assert_eq!(d.receiver_id(), Some(b.session_id()));
    assert_eq!(d.emitter_id(), Some(a.session_id()));
    assert_eq!(&d.payload()[..], b"direct");
    assert_eq!(d.trace_id(), Some(trace));
    assert_eq!(d.token(), None);
    assert_eq!(d.transaction_id(), None);
    assert_eq!(d.channel(), None);

    // The helper works as well, including a send to oneself.
    a.send_to(a.session_id(), b"me").await.unwrap();
    let d = a.recv_timeout(DEADLINE).await.expect("delivery to self");
    assert_eq!(d.emitter_id(), Some(a.session_id()));
    assert_eq!(d.receiver_id(), Some(a.session_id()));

    // Nobody else got anything: their next frame is a later broadcast.
    a.broadcast(b"sentinel").await.unwrap();
    for x in [&b, &c, &a] {
        let d = x.recv_timeout(DEADLINE).await.expect("broadcast");
        assert_eq!(d.opcode(), Opcode::Broadcast.0);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn send_failures_carry_the_transaction_id() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;

    // Unknown receiver: NotFound.
    let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let e = raw
        .request(
            FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(Uuid::new_v4()))
                .payload(b"x")
                .transaction_id(Some(tx))
                .trace_id(Some(trace)),
        )
        .await;
    assert_error(&e, ErrorCode::NotFound, Some(tx));
    assert_eq!(e.trace_id(), Some(trace));

    // Also with requires_ack: an Error, no Ack.
    let tx = Uuid::new_v4();
    let e = raw
        .request(
            FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(Uuid::new_v4()))
                .transaction_id(Some(tx))
                .requires_ack(true),
        )
        .await;
    assert_error(&e, ErrorCode::NotFound, Some(tx));
    assert_nothing_pending(&mut raw).await;

    // No receiver: InvalidArgument.
    let tx = Uuid::new_v4();
    let e = raw
        .request(
            FrameFields::new(Opcode::Send.0)
                .payload(b"x")
                .transaction_id(Some(tx)),
        )
        .await;
    assert_error(&e, ErrorCode::InvalidArgument, Some(tx));

    let c = client(&server).await;
    expect_server_error(c.send_to(Uuid::new_v4(), b"x").await, ErrorCode::NotFound);
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::NotFound), 3);
    assert_eq!(
        server
            .node()
            .metrics()
            .errors_sent(ErrorCode::InvalidArgument),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_every_session_including_the_sender() {
    let server = start(App::new()).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(client(&server).await);
    }
    let sender = &clients[2];
    let trace = Uuid::new_v4();
    sender
        .call(
            FrameFields::new(Opcode::Broadcast.0)
                .payload(b"to all")
                .trace_id(Some(trace))
                .token("secret")
                .requires_ack(true),
        )
        .await
        .expect("broadcast acked");
    for c in &clients {
        let d = c.recv_timeout(DEADLINE).await.expect("broadcast delivery");
        assert_eq!(d.opcode(), Opcode::Broadcast.0);
        assert_eq!(&d.payload()[..], b"to all");
        assert_eq!(d.emitter_id(), Some(sender.session_id()));
        assert_eq!(d.trace_id(), Some(trace));
        assert_eq!(d.token(), None);
        assert_eq!(d.transaction_id(), None);
        assert_eq!(d.channel(), None);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_channels_are_invalid_argument() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;
    let long = "a".repeat(256);
    let long_multibyte = "€".repeat(86); // 258 bytes, 86 characters
    let invalid: [Option<&str>; 10] = [
        None,
        Some(""),
        Some(&long),
        Some(&long_multibyte),
        Some("line\nbreak"),
        Some("nul\0"),
        Some("\ttab"),
        Some("esc\u{1b}[0m"),
        Some("del\u{7f}"),
        Some("c1\u{85}control"),
    ];
    let mut errors = 0;
    for opcode in [Opcode::Subscribe, Opcode::Unsubscribe, Opcode::Publish] {
        for channel in invalid {
            let tx = Uuid::new_v4();
            let mut fields = FrameFields::new(opcode.0)
                .transaction_id(Some(tx))
                .payload(b"x");
            fields.channel = channel;
            let e = raw.request(fields).await;
            assert_error(&e, ErrorCode::InvalidArgument, Some(tx));
            errors += 1;
            // With requires_ack as well: still an Error (and no Ack).
            let tx = Uuid::new_v4();
            let mut fields = FrameFields::new(opcode.0)
                .transaction_id(Some(tx))
                .requires_ack(true);
            fields.channel = channel;
            let e = raw.request(fields).await;
            assert_error(&e, ErrorCode::InvalidArgument, Some(tx));
            errors += 1;
        }
    }
    assert_nothing_pending(&mut raw).await;
    assert_eq!(server.node().hub().channel_count(), 0);
    assert_eq!(
        server
            .node()
            .metrics()
            .errors_sent(ErrorCode::InvalidArgument),
        errors
    );

    // The edges that are valid: 1 byte, 255 bytes, 255 bytes of multi-byte UTF-8.
    let c = client(&server).await;
    let max_ascii = "z".repeat(255);
    let max_multibyte = "€".repeat(85);
    for channel in [
        "x",
        &max_ascii,
        &max_multibyte,
        "with space/and:punct",
        "日本語🎉",
    ] {
        c.subscribe(channel).await.expect(channel);
        c.publish(channel, b"ok").await.expect(channel);
        let d = c.recv_timeout(DEADLINE).await.expect("delivery");
        assert_eq!(d.channel(), Some(channel));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_and_server_only_opcodes_are_unknown_opcode() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;
    let opcodes = [
        Opcode::None.0,
        Opcode::Welcome.0,
        Opcode::Pong.0,
        Opcode::Ack.0,
        Opcode::Error.0,
        Opcode::Auth.0, // no authentication configured
        Opcode::Join.0,
        Opcode::Leave.0,
        16,
        150,
        199,
        200,
        4242,
        u16::MAX,
    ];
    for opcode in opcodes {
        let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
        let e = raw
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(tx))
                    .trace_id(Some(trace))
                    .channel("c")
                    .payload(b"p")
                    .requires_ack(true),
            )
            .await;
        assert_error(&e, ErrorCode::UnknownOpcode, Some(tx));
        assert_eq!(e.trace_id(), Some(trace), "opcode {opcode}");
        // Without a transaction id: still an Error, uncorrelated.
        let e = raw.request(FrameFields::new(opcode)).await;
        assert_error(&e, ErrorCode::UnknownOpcode, None);
    }
    assert_nothing_pending(&mut raw).await;
    assert_eq!(
        server
            .node()
            .metrics()
            .errors_sent(ErrorCode::UnknownOpcode),
        2 * opcodes.len() as u64
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_text_message_is_bad_frame_and_the_connection_stays_open() {
    let server = start(App::new()).await;
    let (mut raw, _) = RawWs::connect(&server).await;
    for text in ["hello", "", "{\"opcode\": 2}"] {
        raw.send(Message::text(text)).await;
        let e = raw.next_frame().await.expect("an Error for a text message");
        assert_error(&e, ErrorCode::BadFrame, None);
        assert_eq!(e.trace_id(), None);
        assert_nothing_pending(&mut raw).await;
    }
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::BadFrame), 3);
    server.shutdown().await;
}

/// A valid `Message` buffer finished without any file identifier: the same table as
/// `frame`, with the 4 identifier bytes cut out and the root offset moved back.
fn without_identifier(frame: &[u8]) -> Vec<u8> {
    let root = u32::from_le_bytes(frame[0..4].try_into().unwrap());
    let mut out = (root - 4).to_le_bytes().to_vec();
    out.extend_from_slice(&frame[8..]);
    out
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[tokio::test]
async fn undecodable_binary_is_bad_frame_and_nothing_else_is_affected() {
    let server = start(App::new()).await;
    let bystander = client(&server).await;
    bystander.subscribe("room").await.unwrap();
    let (mut raw, _) = RawWs::connect(&server).await;

    let valid = FrameFields::new(Opcode::Ping.0)
        .transaction_id(Some(Uuid::new_v4()))
        .encode();
    let no_identifier = without_identifier(&valid);
    // Precondition: a verifiable Message, only the identifier is missing.
    let parsed = fbs::root_as_message(&no_identifier).expect("still a valid flatbuffer");
    assert_eq!(parsed.opcode(), Opcode::Ping);
    assert!(!fbs::message_buffer_has_identifier(&no_identifier));
    let mut other_identifier = valid.to_vec();
    other_identifier[4..8].copy_from_slice(b"FWK2");
    let mut bad_root = valid.to_vec();
    bad_root[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut bad_vtable = valid.to_vec();
    let root = u32::from_le_bytes(valid[0..4].try_into().unwrap()) as usize;
    bad_vtable[root..root + 4].copy_from_slice(&i32::MIN.to_le_bytes());

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("three bytes", vec![1, 2, 3]),
        ("seven zero bytes", vec![0; 7]),
        ("random bytes", noise(64, 0x9E37_79B9_7F4A_7C15)),
        ("more random bytes", noise(4096, 42)),
        ("valid flatbuffer without identifier", no_identifier),
        ("another identifier", other_identifier),
        ("FWK1 but root offset out of bounds", bad_root),
        ("FWK1 but vtable offset out of bounds", bad_vtable),
        ("truncated frame", valid[..valid.len() / 2].to_vec()),
        ("identifier only", b"\x08\0\0\0FWK1".to_vec()),
    ];
    for (what, bytes) in &cases {
        raw.send_binary(bytes.clone()).await;
        let e = raw.next_frame().await.expect(what);
        assert_eq!(e.opcode(), Opcode::Error.0, "{what}");
        assert_eq!(e.error_code(), ErrorCode::BadFrame, "{what}");
        assert_eq!(e.transaction_id(), None, "{what}");
        assert_eq!(e.trace_id(), None, "{what}");
        // The connection still answers.
        assert_nothing_pending(&mut raw).await;
    }
    assert_eq!(
        server.node().metrics().errors_sent(ErrorCode::BadFrame),
        cases.len() as u64
    );

    // Another connection was not affected at all.
    bystander.ping().await.unwrap();
    bystander.publish("room", b"still here").await.unwrap();
    let d = bystander
        .recv_timeout(Duration::from_secs(5))
        .await
        .expect("delivery");
    assert_eq!(&d.payload()[..], b"still here");
    assert_eq!(server.node().hub().session_count(), 2);
    server.shutdown().await;
}
