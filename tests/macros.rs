//! The declarative layer end to end: handlers registered by `#[opcode]`,
//! `#[override_opcode]` and `#[raw_ws]`, typed extraction, and the registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use framework::dispatch::{Body, State, Trace, TransactionId};
use framework::prelude::*;
use framework::protocol::{fbs, FrameFields};
use framework::Connection;
use framework_tests::{any_port, client, expect_server_error};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use framework_test_handlers as _;

#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Sum {
    a: i64,
    b: i64,
}

#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Total {
    total: i64,
    by: uuid::Uuid,
}

static SUM_CALLS: AtomicU64 = AtomicU64::new(0);

#[opcode(300)]
async fn add(conn: Connection, sum: Sum) -> Result<Total, HandlerError> {
    SUM_CALLS.fetch_add(1, Ordering::SeqCst);
    let total = sum
        .a
        .checked_add(sum.b)
        .ok_or_else(|| HandlerError::new(ErrorCode::InvalidArgument, "overflow"))?;
    Ok(Total {
        total,
        by: conn.id(),
    })
}

#[opcode(301)]
fn sync_echo(Body(body): Body) -> Vec<u8> {
    body.to_vec()
}

struct Greeting(String);

#[opcode(302)]
fn with_state(State(greeting): State<Greeting>, trace: Trace, tx: TransactionId) -> Vec<u8> {
    format!("{} {} {}", greeting.0, trace.trace_id, tx.0.is_some()).into_bytes()
}

#[opcode(303)]
fn builder_style(mut ctx: Request) -> Reply {
    framework::helpers::make_empty_response(&mut ctx, 303)
}

/// A flatc-generated table as the typed message, borrowed from the payload.
#[opcode(304)]
fn flatc_table(msg: fbs::Message<'_>) -> Vec<u8> {
    msg.channel().unwrap_or("none").as_bytes().to_vec()
}

#[opcode(305)]
async fn request_by_value(ctx: Request, quota: QuotaResultAlias) -> Vec<u8> {
    format!("{}:{}", ctx.opcode(), quota.is_allowed()).into_bytes()
}
type QuotaResultAlias = framework::dispatch::QuotaResult;

#[opcode(306)]
fn panics() -> Vec<u8> {
    panic!("handler bug")
}

/// Two per ten seconds per connection, from the macro.
#[opcode(307, quota = "2/10s")]
fn limited() -> Vec<u8> {
    b"fine".to_vec()
}

/// Only for authenticated senders (this binary's server has no authentication,
/// so every sender is anonymous).
#[opcode(308, auth)]
fn members_only() -> Vec<u8> {
    b"welcome".to_vec()
}

/// Opcode 309's frames must say please (an authorizer from the macro; it sees
/// every governed frame, and lets all others through).
#[authorize]
async fn must_say_please(attempt: framework::dispatch::authorize::Attempt, body: Body) -> bool {
    attempt.opcode() != 309 || body.0.starts_with(b"please")
}

#[opcode(309)]
fn polite() -> Vec<u8> {
    b"thank you".to_vec()
}

#[override_opcode(Ping)]
fn custom_ping() -> Reply {
    Reply::with_opcode(Opcode::Pong, Some(bytes::Bytes::from_static(b"custom")))
}

#[raw_ws(port = 0)]
async fn raw_upper(conn: RawConnection) {
    while let Some(m) = conn.recv().await {
        let _ = conn.send(m.data().to_ascii_uppercase());
    }
}

async fn start() -> AppHandle {
    App::new()
        .with_registered()
        .with_state(Greeting("hello".into()))
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("registry is consistent")
}

#[tokio::test]
async fn typed_messages_in_and_out() {
    let server = start().await;
    let c = client(&server).await;
    let reply = c.request(300, &Sum { a: 40, b: 2 }.encode()).await.unwrap();
    assert_eq!(reply.opcode(), 300);
    let total = Total::decode(&reply.payload()).unwrap();
    assert_eq!(
        total,
        Total {
            total: 42,
            by: c.session_id()
        }
    );

    expect_server_error(
        c.request(300, &Sum { a: i64::MAX, b: 1 }.encode()).await,
        ErrorCode::InvalidArgument,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_payload_never_reaches_the_handler() {
    let server = start().await;
    let c = client(&server).await;
    let before = SUM_CALLS.load(Ordering::SeqCst);
    for garbage in [&b""[..], b"\x01\x02\x03", &[0xff; 64]] {
        expect_server_error(c.request(300, garbage).await, ErrorCode::BadPayload);
    }
    assert_eq!(SUM_CALLS.load(Ordering::SeqCst), before);
    c.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn extractors_state_trace_body_builder_and_tables() {
    let server = start().await;
    let c = client(&server).await;
    assert_eq!(&c.request(301, b"abc").await.unwrap().payload()[..], b"abc");

    let trace = uuid::Uuid::new_v4();
    let reply = c
        .call(FrameFields::new(302).trace_id(Some(trace)))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply.payload()),
        format!("hello {trace} true")
    );

    let reply = c.request(303, b"").await.unwrap();
    assert_eq!(reply.opcode(), 303);
    assert!(reply.payload().is_empty());

    let table = FrameFields::new(0).channel("nested-table").encode();
    assert_eq!(
        &c.request(304, &table).await.unwrap().payload()[..],
        b"nested-table"
    );
    expect_server_error(c.request(304, b"nope").await, ErrorCode::BadPayload);

    assert_eq!(
        &c.request(305, b"").await.unwrap().payload()[..],
        b"305:true"
    );

    expect_server_error(c.request(306, b"").await, ErrorCode::Internal);
    c.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn overrides_raw_services_and_library_handlers_register() {
    let server = start().await;
    let c = client(&server).await;
    let pong = c.call(FrameFields::new(Opcode::Ping.0)).await.unwrap();
    assert_eq!(pong.opcode(), Opcode::Pong.0);
    assert_eq!(&pong.payload()[..], b"custom");

    assert_eq!(
        &c.request(900, b"").await.unwrap().payload()[..],
        b"from the library"
    );

    let raw = server.raw_addrs()[0];
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/", raw.port()))
        .await
        .unwrap();
    ws.send(WsMessage::Binary(bytes::Bytes::from_static(b"shout")))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_data(), bytes::Bytes::from_static(b"SHOUT"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_opcode_quota_from_the_macro_is_enforced() {
    let server = start().await;
    let c = framework::client::Client::connect(&format!("ws://{}/", server.websocket_addr()))
        .await
        .unwrap();
    assert!(c.request(307, b"").await.is_ok());
    assert!(c.request(307, b"").await.is_ok());
    framework_tests::expect_server_error(
        c.request(307, b"").await,
        framework::protocol::ErrorCode::RateLimited,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_opcode_requirement_from_the_macro_is_enforced() {
    let server = start().await;
    let c = framework::client::Client::connect(&format!("ws://{}/", server.websocket_addr()))
        .await
        .unwrap();
    framework_tests::expect_server_error(
        c.request(308, b"").await,
        framework::protocol::ErrorCode::Unauthorized,
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_authorizer_from_the_macro_decides() {
    let server = start().await;
    let c = client(&server).await;
    expect_server_error(c.request(309, b"now").await, ErrorCode::Unauthorized);
    assert_eq!(
        &c.request(309, b"please").await.unwrap().payload()[..],
        b"thank you"
    );
    // Other opcodes pass through it.
    assert_eq!(&c.request(307, b"").await.unwrap().payload()[..], b"fine");
    server.shutdown().await;
}

#[test]
fn the_registry_knows_every_item_and_where_it_is() {
    let names: Vec<_> = framework::registry::all().map(|r| r.name).collect();
    for n in [
        "add",
        "sync_echo",
        "custom_ping",
        "raw_upper",
        "must_say_please",
        "from_library",
        "Sum",
        "Total",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let add = framework::registry::all()
        .find(|r| r.name == "add")
        .unwrap();
    assert!(add.file.ends_with("macros.rs"), "{}", add.file);
    assert!(add.origin().contains("macros.rs:"));
}
