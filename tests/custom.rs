//! Custom (application opcode) handlers and built-in overrides end to end: replies,
//! handler errors, caught panics, start-up validation of registrations, and the
//! parts of a `Request` a handler sees.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use framework::app::AppError;
use framework::dispatch::Request;
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::{App, HandlerError, Reply};
use framework_tests::{client, expect_server_error, start, start_err, RawWs, DEADLINE};
use uuid::Uuid;

fn echo(ctx: Request) -> Reply {
    Reply::payload(ctx.body().clone())
}

async fn async_echo(ctx: Request) -> Reply {
    tokio::task::yield_now().await;
    Reply::payload(ctx.body().clone())
}

fn ping(tx: Uuid) -> FrameFields<'static> {
    FrameFields::new(Opcode::Ping.0).transaction_id(Some(tx))
}

/// Sends a ping and asserts the next frame is its pong: nothing else was queued.
async fn assert_nothing_pending(raw: &mut RawWs) {
    let tx = Uuid::new_v4();
    let pong = raw.request(ping(tx)).await;
    assert_eq!(pong.opcode(), Opcode::Pong.0, "expected Pong, got {pong:?}");
    assert_eq!(pong.transaction_id(), Some(tx));
}

#[tokio::test]
async fn a_custom_handler_answers_with_the_same_opcode_and_transaction_id() {
    let server = start(
        App::new()
            .register_custom_handler(200, echo)
            .register_custom_handler(201, |_ctx: Request| ())
            .register_custom_handler(u16::MAX, async_echo),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;

    for opcode in [200, u16::MAX] {
        let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
        let r = raw
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(tx))
                    .trace_id(Some(trace))
                    .payload(b"abc"),
            )
            .await;
        assert_eq!(r.opcode(), opcode);
        assert_eq!(r.transaction_id(), Some(tx));
        assert_eq!(r.trace_id(), Some(trace));
        assert_eq!(&r.payload()[..], b"abc");
        assert_eq!(r.error_code(), ErrorCode::None);
        assert_ne!(r.span_id(), 0, "a reply carries the server's span id");
    }

    // An empty response: same opcode and transaction id, no payload.
    let tx = Uuid::new_v4();
    let r = raw
        .request(FrameFields::new(201).transaction_id(Some(tx)).payload(b"x"))
        .await;
    assert_eq!(r.opcode(), 201);
    assert_eq!(r.transaction_id(), Some(tx));
    assert!(!r.has_payload());

    // requires_ack does not add an Ack to an application opcode's response.
    let tx = Uuid::new_v4();
    let r = raw
        .request(
            FrameFields::new(200)
                .transaction_id(Some(tx))
                .requires_ack(true),
        )
        .await;
    assert_eq!(r.opcode(), 200);
    assert_nothing_pending(&mut raw).await;

    // Through the Rust client.
    let c = client(&server).await;
    let r = c.request(200, b"via client").await.unwrap();
    assert_eq!(&r.payload()[..], b"via client");
    let r = c.request(u16::MAX, b"").await.unwrap();
    assert_eq!(r.opcode(), u16::MAX);
    server.shutdown().await;
}

#[tokio::test]
async fn handler_errors_become_error_frames_with_the_chosen_code() {
    let server = start(
        App::new()
            .register_custom_handler(210, |_ctx: Request| -> Result<Reply, HandlerError> {
                Err(HandlerError::new(ErrorCode::Forbidden, "not in this room"))
            })
            .register_custom_handler(211, |_ctx: Request| -> Result<(), HandlerError> {
                Err(HandlerError::rate_limited(1500))
            })
            .register_custom_handler(212, |_ctx: Request| async {
                tokio::task::yield_now().await;
                Err::<Vec<u8>, _>(HandlerError::not_found("no such thing"))
            })
            .register_custom_handler(213, |_ctx: Request| {
                HandlerError::bad_payload("expected a Point")
            }),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    let cases = [
        (210, ErrorCode::Forbidden, "not in this room", 0),
        (211, ErrorCode::RateLimited, "rate limited", 1500),
        (212, ErrorCode::NotFound, "no such thing", 0),
        (213, ErrorCode::BadPayload, "expected a Point", 0),
    ];
    for (opcode, code, message, retry) in cases {
        let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
        let e = raw
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(tx))
                    .trace_id(Some(trace)),
            )
            .await;
        assert_eq!(e.opcode(), Opcode::Error.0, "opcode {opcode}");
        assert_eq!(e.error_code(), code);
        assert_eq!(e.error_message(), Some(message));
        assert_eq!(e.retry_after_ms(), retry);
        assert_eq!(e.transaction_id(), Some(tx));
        assert_eq!(e.trace_id(), Some(trace));
    }
    let c = client(&server).await;
    let msg = expect_server_error(c.request(210, b"").await, ErrorCode::Forbidden);
    assert_eq!(msg, "not in this room");
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::Forbidden), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_is_internal_and_everything_survives() {
    let server = start(
        App::new()
            .register_custom_handler(220, |_ctx: Request| -> Reply {
                panic!("sync handler exploded with secret detail")
            })
            .register_custom_handler(221, |_ctx: Request| async {
                tokio::task::yield_now().await;
                if true {
                    panic!("async handler exploded with secret detail");
                }
                Reply::empty()
            })
            .register_custom_handler(222, |_ctx: Request| -> std::future::Ready<Reply> {
                panic!("panicked before returning its future, secret detail")
            })
            .register_custom_handler(200, echo),
    )
    .await;
    let bystander = client(&server).await;
    let (mut raw, _) = RawWs::connect(&server).await;
    for round in 0..2 {
        for opcode in [220, 221, 222] {
            let tx = Uuid::new_v4();
            let e = raw
                .request(FrameFields::new(opcode).transaction_id(Some(tx)))
                .await;
            assert_eq!(
                e.opcode(),
                Opcode::Error.0,
                "opcode {opcode}, round {round}"
            );
            assert_eq!(e.error_code(), ErrorCode::Internal);
            assert_eq!(e.transaction_id(), Some(tx));
            let message = e.error_message().unwrap_or_default();
            assert!(
                !message.contains("secret"),
                "the panic message must not leak: {message:?}"
            );
            // The same connection keeps working.
            assert_nothing_pending(&mut raw).await;
            let r = raw.request(FrameFields::new(200).payload(b"alive")).await;
            assert_eq!(&r.payload()[..], b"alive");
        }
    }
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::Internal), 6);
    // Other connections and the server itself keep working.
    bystander.ping().await.unwrap();
    let late = client(&server).await;
    expect_server_error(late.request(221, b"").await, ErrorCode::Internal);
    late.ping().await.unwrap();
    assert_eq!(server.node().hub().session_count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn reserved_opcodes_cannot_be_registered() {
    for opcode in [0, Opcode::Ping.0, 150, 199] {
        let line = line!() + 1;
        let app = App::new().register_custom_handler(opcode, echo);
        match start_err(app).await {
            AppError::ReservedOpcode {
                opcode: refused,
                origin,
            } => {
                assert_eq!(refused, opcode);
                assert!(
                    origin.starts_with(&format!("{}:{line}:", file!())),
                    "origin {origin:?} names the registration"
                );
            }
            other => panic!("expected ReservedOpcode, got {other:?}"),
        }
    }
    // 200 is the first application opcode.
    let server = start(App::new().register_custom_handler(200, echo)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_registration_names_both_origins() {
    let app = App::new();
    let first = line!() + 1;
    let app = app.register_custom_handler(300, echo);
    let second = line!() + 1;
    let app = app.register_custom_handler(300, async_echo);
    match start_err(app).await {
        AppError::DuplicateHandler {
            opcode,
            first: a,
            second: b,
        } => {
            assert_eq!(opcode, 300);
            assert!(a.starts_with(&format!("{}:{first}:", file!())), "{a}");
            assert!(b.starts_with(&format!("{}:{second}:", file!())), "{b}");
            let shown = AppError::DuplicateHandler {
                opcode,
                first: a.clone(),
                second: b.clone(),
            }
            .to_string();
            assert!(shown.contains(&a) && shown.contains(&b), "{shown}");
        }
        other => panic!("expected DuplicateHandler, got {other:?}"),
    }

    // Two overrides of one built-in as well.
    let app = App::new();
    let first = line!() + 1;
    let app = app.override_websocket_handler(Opcode::Ping, |_ctx: Request| Reply::none());
    let second = line!() + 1;
    let app = app.override_websocket_handler(Opcode::Ping, |_ctx: Request| Reply::none());
    match start_err(app).await {
        AppError::DuplicateHandler {
            opcode,
            first: a,
            second: b,
        } => {
            assert_eq!(opcode, Opcode::Ping.0);
            assert!(a.starts_with(&format!("{}:{first}:", file!())), "{a}");
            assert!(b.starts_with(&format!("{}:{second}:", file!())), "{b}");
        }
        other => panic!("expected DuplicateHandler, got {other:?}"),
    }
}

#[tokio::test]
async fn server_only_opcodes_cannot_be_overridden() {
    for opcode in [Opcode::Welcome, Opcode::Pong, Opcode::Ack, Opcode::Error] {
        let app = App::new().override_websocket_handler(opcode, |_ctx: Request| ());
        match start_err(app).await {
            AppError::NotOverridable { opcode: o, origin } => {
                assert_eq!(o, opcode.0);
                assert!(origin.starts_with(file!()), "{origin}");
            }
            other => panic!("expected NotOverridable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn overriding_ping_replaces_the_pong_behaviour() {
    let server = start(
        App::new().override_websocket_handler(Opcode::Ping, |ctx: Request| {
            let mut body = b"custom pong for ".to_vec();
            body.extend_from_slice(ctx.body());
            Reply::with_opcode(Opcode::Pong, Some(Bytes::from(body)))
        }),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let pong = raw
        .request(ping(tx).trace_id(Some(trace)).payload(b"me"))
        .await;
    assert_eq!(pong.opcode(), Opcode::Pong.0);
    assert_eq!(pong.transaction_id(), Some(tx));
    assert_eq!(pong.trace_id(), Some(trace));
    assert_eq!(&pong.payload()[..], b"custom pong for me");
    // The other built-ins are untouched.
    let c = client(&server).await;
    c.subscribe("room").await.unwrap();
    c.publish("room", b"x").await.unwrap();
    assert!(c.recv_timeout(DEADLINE).await.is_some());
    server.shutdown().await;

    // An override may refuse, too.
    let server = start(App::new().override_websocket_handler(
        Opcode::Ping,
        |_ctx: Request| -> Result<Reply, HandlerError> {
            Err(HandlerError::new(ErrorCode::Forbidden, "no pings here"))
        },
    ))
    .await;
    let c = client(&server).await;
    expect_server_error(c.ping().await, ErrorCode::Forbidden);
    server.shutdown().await;
}

/// Shared state for `request_parts_are_populated`.
struct Greeting(&'static str);

/// A shared counter, to prove state is one instance across connections.
#[derive(Default)]
struct Counter(AtomicU64);

/// Describes what the handler saw: one text line, then the raw body.
fn inspect(ctx: Request) -> Result<Vec<u8>, HandlerError> {
    let greeting = ctx
        .state_of::<Greeting>()
        .ok_or_else(HandlerError::internal)?;
    let counter = ctx
        .state_of::<Counter>()
        .ok_or_else(HandlerError::internal)?;
    let count = counter.0.fetch_add(1, Ordering::SeqCst) + 1;
    let line = format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
        ctx.trace_id(),
        ctx.parent_span_id(),
        ctx.span_id(),
        ctx.connection().id(),
        ctx.connection().node_id(),
        ctx.transaction_id()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        ctx.opcode(),
        greeting.0,
        ctx.state_of::<String>().is_some(),
        ctx.connection().ip(),
        count,
    );
    let mut out = line.into_bytes();
    out.extend_from_slice(ctx.body());
    Ok(out)
}

struct Seen {
    trace: Uuid,
    parent_span: u64,
    span: u64,
    session: Uuid,
    node: Uuid,
    tx: Option<Uuid>,
    opcode: u16,
    greeting: String,
    has_string_state: bool,
    ip: String,
    count: u64,
    body: Vec<u8>,
}

fn parse_seen(payload: &[u8]) -> Seen {
    let nl = payload.iter().position(|&b| b == b'\n').expect("a line");
    let line = std::str::from_utf8(&payload[..nl]).unwrap();
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 11, "{line}");
    Seen {
        trace: f[0].parse().unwrap(),
        parent_span: f[1].parse().unwrap(),
        span: f[2].parse().unwrap(),
        session: f[3].parse().unwrap(),
        node: f[4].parse().unwrap(),
        tx: (!f[5].is_empty()).then(|| f[5].parse().unwrap()),
        opcode: f[6].parse().unwrap(),
        greeting: f[7].to_string(),
        has_string_state: f[8].parse().unwrap(),
        ip: f[9].to_string(),
        count: f[10].parse().unwrap(),
        body: payload[nl + 1..].to_vec(),
    }
}

#[tokio::test]
async fn request_parts_are_populated() {
    let server = start(
        App::new()
            .with_state(Greeting("hello"))
            .with_state(Counter::default())
            .register_custom_handler(230, inspect),
    )
    .await;
    let (mut raw, welcome) = RawWs::connect(&server).await;
    let me = welcome.receiver_id().unwrap();

    let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
    let body: Vec<u8> = (0..=255u8).collect();
    let r = raw
        .request(
            FrameFields::new(230)
                .transaction_id(Some(tx))
                .trace_id(Some(trace))
                .span_id(0xDEAD_BEEF_0042)
                .payload(&body),
        )
        .await;
    assert_eq!(r.opcode(), 230);
    let seen = parse_seen(&r.payload());
    assert_eq!(seen.trace, trace, "trace_id is the frame's");
    assert_eq!(
        seen.parent_span, 0xDEAD_BEEF_0042,
        "parent_span_id is the frame's span_id"
    );
    assert_ne!(seen.span, 0);
    assert_eq!(
        seen.span,
        r.span_id(),
        "the reply carries the request's span id"
    );
    assert_eq!(seen.session, me, "connection().id() is the session id");
    assert_eq!(seen.node, server.node().node_id());
    assert_eq!(seen.tx, Some(tx));
    assert_eq!(seen.opcode, 230);
    assert_eq!(
        seen.greeting, "hello",
        "state_of::<T>() from App::with_state"
    );
    assert!(
        !seen.has_string_state,
        "state of an unregistered type is None"
    );
    assert_eq!(seen.ip, "127.0.0.1");
    assert_eq!(seen.count, 1);
    assert_eq!(seen.body, body, "body is the payload");

    // Without trace, span, transaction id or payload.
    let r = raw.request(FrameFields::new(230)).await;
    let seen = parse_seen(&r.payload());
    assert!(!seen.trace.is_nil(), "a server-created trace id");
    assert_eq!(r.trace_id(), Some(seen.trace), "and the reply carries it");
    assert_eq!(seen.parent_span, 0);
    assert_eq!(seen.tx, None);
    assert!(seen.body.is_empty());
    assert_eq!(seen.count, 2);

    // The state is one instance, shared by every connection and the node.
    let other = client(&server).await;
    let r = other.request(230, b"").await.unwrap();
    let seen = parse_seen(&r.payload());
    assert_eq!(seen.session, other.session_id());
    assert_eq!(seen.count, 3);
    let counter = server.node().state().get::<Counter>().unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_can_use_the_node_to_publish() {
    let server = start(
        App::new().register_custom_handler(240, |ctx: Request| async move {
            let emitter = ctx.connection().id();
            ctx.node()
                .publish("from-handler", ctx.body(), emitter, Some(ctx.trace_id()))
                .await
                .map_err(HandlerError::from)?;
            Ok::<_, HandlerError>(Reply::empty())
        }),
    )
    .await;
    let sub = client(&server).await;
    let caller = client(&server).await;
    sub.subscribe("from-handler").await.unwrap();
    let r = caller.request(240, b"relayed").await.unwrap();
    assert_eq!(r.opcode(), 240);
    let d = sub.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(d.opcode(), Opcode::Publish.0);
    assert_eq!(&d.payload()[..], b"relayed");
    assert_eq!(d.emitter_id(), Some(caller.session_id()));
    assert_eq!(d.trace_id(), r.trace_id());
    server.shutdown().await;
}
