//! Handlers as plain functions of extractors, over real sockets: typed messages in
//! and out, the `Request` in any position, sync and async extractors (and their
//! errors, which never reach the handler), `Option<T>` replies, flatc tables
//! borrowed and owned, caught panics, in-order answers to pipelined requests,
//! start-up checks of `State<T>` and of the broker factory, and the opcode-named
//! counters of `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framework::app::AppError;
use framework::broker::{Broker, BrokerError, InMemoryBroker};
use framework::dispatch::hooks::Refusal;
use framework::dispatch::{
    AsyncFromRequestParts, Body, FromRequestParts, State, Table, TransactionId,
};
use framework::protocol::{fbs, ErrorCode, FrameFields, Opcode};
use framework::session::Connection;
use framework::{App, HandlerError, Message, Request};
use framework_tests::http::{self, metric};
use framework_tests::{any_port, client, expect_server_error, start, start_err, RawWs, DEADLINE};
use uuid::Uuid;

#[derive(framework::Message, Debug, Clone, PartialEq)]
struct ChatLine {
    room: String,
    text: String,
}

fn line(room: &str, text: &str) -> ChatLine {
    ChatLine {
        room: room.into(),
        text: text.into(),
    }
}

/// Counts handler calls, so a test can show a handler was (not) called.
#[derive(Default)]
struct Calls {
    typed: AtomicU64,
    extracted: AtomicU64,
    borrowed_table: AtomicU64,
    owned_table: AtomicU64,
}

fn calls(server: &framework::AppHandle) -> Arc<Calls> {
    server
        .node()
        .state()
        .get::<Calls>()
        .expect("Calls is registered")
}

/// The handler of the brief, word for word: an async fn of the `Request` and a
/// derived message, answering a derived message.
async fn post(ctx: Request, line: ChatLine) -> Result<ChatLine, HandlerError> {
    if line.text.is_empty() {
        return Err(HandlerError::invalid_argument("say something"));
    }
    let calls = ctx.state_of::<Calls>().expect("Calls is registered");
    calls.typed.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    Ok(ChatLine {
        room: line.room,
        text: format!("{} (from {})", line.text, ctx.connection().id()),
    })
}

/// The `Request` in last position, beside the typed message.
fn request_last(line: ChatLine, ctx: Request) -> Vec<u8> {
    format!("{}:{}:{}", ctx.opcode(), line.room, line.text).into_bytes()
}

/// A sync extractor: the sender, unless the frame's channel says "nobody".
struct Caller(Uuid);

impl FromRequestParts for Caller {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        if req.message().channel() == Some("nobody") {
            return Err(HandlerError::new(ErrorCode::Unauthorized, "who are you?"));
        }
        Ok(Caller(req.connection().id()))
    }
}

/// An async extractor that awaits (a stand-in for a database lookup): the frame's
/// token, refused when it is "deny".
struct Account(String);

impl AsyncFromRequestParts for Account {
    async fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        let token = req.message().token().map(str::to_owned);
        tokio::time::sleep(Duration::from_millis(1)).await;
        match token.as_deref() {
            Some("deny") => Err(HandlerError::new(ErrorCode::Forbidden, "account refused")),
            Some(t) => Ok(Account(t.to_string())),
            None => Ok(Account("anonymous".into())),
        }
    }
}

/// An async handler with a sync extractor, an async extractor, state and a message.
async fn both_extractors(
    State(calls): State<Calls>,
    Caller(caller): Caller,
    Account(account): Account,
    line: ChatLine,
) -> ChatLine {
    calls.extracted.fetch_add(1, Ordering::SeqCst);
    ChatLine {
        room: caller.to_string(),
        text: format!("{account}: {}", line.text),
    }
}

/// A sync handler with an async extractor (so it runs as a future) and the Request.
fn sync_with_async_extractor(account: Account, ctx: Request) -> Vec<u8> {
    let calls = ctx.state_of::<Calls>().expect("Calls is registered");
    calls.extracted.fetch_add(1, Ordering::SeqCst);
    format!("{}@{}", account.0, ctx.opcode()).into_bytes()
}

fn server_app() -> App {
    App::new()
        .with_state(Calls::default())
        .register_custom_handler(200, post)
        .register_custom_handler(201, request_last)
        .register_custom_handler(202, both_extractors)
        .register_custom_handler(203, sync_with_async_extractor)
}

#[tokio::test]
async fn an_async_fn_of_the_request_and_a_message_round_trips() {
    let server = start(server_app()).await;
    let c = client(&server).await;

    let reply = c.request(200, &line("rust", "hi").encode()).await.unwrap();
    assert_eq!(reply.opcode(), 200);
    let answer = ChatLine::decode(&reply.payload()).expect("the reply is a ChatLine");
    assert_eq!(
        answer,
        line("rust", &format!("hi (from {})", c.session_id()))
    );

    // A handler error keeps its code and message.
    let message = expect_server_error(
        c.request(200, &line("rust", "").encode()).await,
        ErrorCode::InvalidArgument,
    );
    assert_eq!(message, "say something");

    // The connection lives on.
    c.ping().await.unwrap();
    let again = c.request(200, &line("go", "again").encode()).await.unwrap();
    assert_eq!(ChatLine::decode(&again.payload()).unwrap().room, "go");
    assert_eq!(calls(&server).typed.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

/// Payloads that are not a `ChatLine`: empty, too short, garbage, a valid
/// FlatBuffer of another table, and a valid `ChatLine` cut short or corrupted.
fn bad_chat_lines() -> Vec<Vec<u8>> {
    let valid = line("a room", "some text").encode().to_vec();
    let mut bad = vec![
        Vec::new(),
        b"\x01\x02\x03".to_vec(),
        vec![0xff; 64],
        FrameFields::new(Opcode::Ping.0)
            .channel("not a chat line")
            .encode()
            .to_vec(),
    ];
    for cut in [4, 8, valid.len() / 2, valid.len() - 3] {
        bad.push(valid[..cut].to_vec());
    }
    // The root offset pointing past the end.
    let mut past = valid.clone();
    past[0] = 0xf0;
    bad.push(past);
    bad
}

#[tokio::test]
async fn a_bad_payload_is_bad_payload_and_never_reaches_the_handler() {
    let server = start(server_app()).await;
    let c = client(&server).await;
    for payload in bad_chat_lines() {
        let message = expect_server_error(c.request(200, &payload).await, ErrorCode::BadPayload);
        assert!(
            message.starts_with("payload is not a valid ChatLine"),
            "the message names the expected table: {message:?}"
        );
    }
    assert_eq!(
        calls(&server).typed.load(Ordering::SeqCst),
        0,
        "the handler never saw a bad payload"
    );
    // The connection lives on.
    c.ping().await.unwrap();
    let ok = c.request(200, &line("r", "fine").encode()).await.unwrap();
    assert_eq!(ChatLine::decode(&ok.payload()).unwrap().room, "r");
    assert_eq!(calls(&server).typed.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_payload_message_is_one_line_without_a_trailing_newline() {
    let server = start(server_app()).await;
    let c = client(&server).await;
    let mut not_one_line = Vec::new();
    for payload in bad_chat_lines() {
        let message = expect_server_error(c.request(200, &payload).await, ErrorCode::BadPayload);
        if message.contains('\n') || message.trim_end() != message {
            let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
            not_one_line.push(format!("payload {hex:?}: {message:?}"));
        }
    }
    assert!(
        not_one_line.is_empty(),
        "BadPayload messages must be one line without a trailing newline; these are not:\n{}",
        not_one_line.join("\n")
    );
    c.ping().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn the_request_can_come_last_and_extractors_can_be_sync_and_async() {
    let server = start(server_app()).await;
    let c = client(&server).await;
    let counted = || calls(&server).extracted.load(Ordering::SeqCst);

    // Request after the message.
    let r = c
        .request(201, &line("room", "text").encode())
        .await
        .unwrap();
    assert_eq!(&r.payload()[..], b"201:room:text");

    // A sync and an async extractor, both succeeding.
    let r = c
        .call(
            FrameFields::new(202)
                .token("ada")
                .payload(&line("x", "hello").encode()),
        )
        .await
        .unwrap();
    assert_eq!(
        ChatLine::decode(&r.payload()).unwrap(),
        line(&c.session_id().to_string(), "ada: hello")
    );
    assert_eq!(counted(), 1);

    // The async extractor refuses: its code and message, the handler is not called.
    let payload = line("x", "hello").encode();
    let message = expect_server_error(
        c.call(FrameFields::new(202).token("deny").payload(&payload))
            .await,
        ErrorCode::Forbidden,
    );
    assert_eq!(message, "account refused");
    // The sync extractor refuses (before the async one awaits).
    let message = expect_server_error(
        c.call(
            FrameFields::new(202)
                .channel("nobody")
                .token("ada")
                .payload(&payload),
        )
        .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(message, "who are you?");
    // An extractor succeeds but the message does not decode: not called either.
    expect_server_error(
        c.call(FrameFields::new(202).token("ada").payload(b"junk"))
            .await,
        ErrorCode::BadPayload,
    );
    assert_eq!(counted(), 1, "no failed extraction reached the handler");

    // A sync handler with an async extractor and the Request.
    let r = c.call(FrameFields::new(203).token("bob")).await.unwrap();
    assert_eq!(&r.payload()[..], b"bob@203");
    expect_server_error(
        c.call(FrameFields::new(203).token("deny")).await,
        ErrorCode::Forbidden,
    );
    assert_eq!(counted(), 2);

    c.ping().await.unwrap();
    server.shutdown().await;
}

/// `None` for an empty body, else the body as a `ChatLine`'s text.
fn maybe_line(Body(body): Body) -> Option<ChatLine> {
    (!body.is_empty()).then(|| line("maybe", &String::from_utf8_lossy(&body)))
}

async fn maybe_bytes(TransactionId(tx): TransactionId, Body(body): Body) -> Option<Vec<u8>> {
    tokio::task::yield_now().await;
    (!body.is_empty()).then(|| format!("{}", tx.unwrap_or_default()).into_bytes())
}

#[tokio::test]
async fn option_replies_are_empty_responses_or_payloads() {
    let server = start(
        App::new()
            .register_custom_handler(210, maybe_line)
            .register_custom_handler(211, maybe_bytes),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    for opcode in [210, 211] {
        // None: an empty response with the same opcode and transaction id.
        let (tx, trace) = (Uuid::new_v4(), Uuid::new_v4());
        let r = raw
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(tx))
                    .trace_id(Some(trace)),
            )
            .await;
        assert_eq!(r.opcode(), opcode, "None keeps the opcode");
        assert_eq!(r.transaction_id(), Some(tx));
        assert_eq!(r.trace_id(), Some(trace));
        assert_eq!(r.error_code(), ErrorCode::None);
        assert!(!r.has_payload(), "None carries no payload");

        // Some: the payload.
        let tx = Uuid::new_v4();
        let r = raw
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(tx))
                    .payload(b"words"),
            )
            .await;
        assert_eq!(r.opcode(), opcode);
        assert_eq!(r.transaction_id(), Some(tx));
        if opcode == 210 {
            assert_eq!(
                ChatLine::decode(&r.payload()).expect("a derived reply decodes"),
                line("maybe", "words")
            );
        } else {
            assert_eq!(r.payload(), tx.to_string().into_bytes());
        }
    }
    // Through the Rust client too.
    let c = client(&server).await;
    let r = c.request(210, b"").await.unwrap();
    assert!(!r.has_payload());
    let r = c.request(210, b"client").await.unwrap();
    assert_eq!(ChatLine::decode(&r.payload()).unwrap().text, "client");
    server.shutdown().await;
}

/// A sync handler taking a flatc table borrowed from the payload.
fn borrowed_table(State(calls): State<Calls>, msg: fbs::Message<'_>) -> Vec<u8> {
    calls.borrowed_table.fetch_add(1, Ordering::SeqCst);
    format!(
        "borrowed {} {}",
        msg.opcode().0,
        msg.channel().unwrap_or("none")
    )
    .into_bytes()
}

/// An async handler taking an owned flatc table.
async fn owned_table(State(calls): State<Calls>, msg: Table<fbs::Message<'static>>) -> Vec<u8> {
    tokio::task::yield_now().await;
    calls.owned_table.fetch_add(1, Ordering::SeqCst);
    let table = msg.get();
    format!(
        "owned {} {}",
        table.opcode().0,
        table.channel().unwrap_or("none")
    )
    .into_bytes()
}

#[tokio::test]
async fn flatc_tables_borrowed_by_sync_handlers_and_owned_by_async_ones() {
    let server = start(
        App::new()
            .with_state(Calls::default())
            .register_custom_handler(220, borrowed_table)
            .register_custom_handler(221, owned_table),
    )
    .await;
    let c = client(&server).await;
    let table = FrameFields::new(Opcode::Publish.0)
        .channel("inner")
        .payload(b"nested")
        .encode();
    let r = c.request(220, &table).await.unwrap();
    assert_eq!(&r.payload()[..], b"borrowed 6 inner");
    let r = c.request(221, &table).await.unwrap();
    assert_eq!(&r.payload()[..], b"owned 6 inner");

    for opcode in [220, 221] {
        for bad in [&b"nope"[..], b"", &[0xff; 32]] {
            let message = expect_server_error(c.request(opcode, bad).await, ErrorCode::BadPayload);
            assert!(
                !message.contains('\n') && message.trim_end() == message,
                "one line: {message:?}"
            );
        }
    }
    let counts = calls(&server);
    assert_eq!(counts.borrowed_table.load(Ordering::SeqCst), 1);
    assert_eq!(counts.owned_table.load(Ordering::SeqCst), 1);
    c.ping().await.unwrap();
    server.shutdown().await;
}

/// A sync extractor that panics.
struct Explodes;

impl FromRequestParts for Explodes {
    fn from_request_parts(_: &Request) -> Result<Self, HandlerError> {
        panic!("extractor exploded with secret detail")
    }
}

/// An async extractor that panics after awaiting.
struct ExplodesLater;

impl AsyncFromRequestParts for ExplodesLater {
    async fn from_request_parts(_: &Request) -> Result<Self, HandlerError> {
        tokio::task::yield_now().await;
        panic!("async extractor exploded with secret detail")
    }
}

fn never_called(_: Explodes) -> Vec<u8> {
    unreachable!("the extractor panicked")
}

fn never_called_either(_: ExplodesLater, _: Connection) -> Vec<u8> {
    unreachable!("the extractor panicked")
}

async fn panics_after_await(ctx: Request) -> Vec<u8> {
    tokio::task::yield_now().await;
    if ctx.opcode() != 0 {
        panic!("async handler exploded with secret detail");
    }
    Vec::new()
}

#[tokio::test]
async fn panicking_extractors_and_handlers_are_internal_and_the_connection_serves_on() {
    let server = start(
        App::new()
            .register_custom_handler(230, never_called)
            .register_custom_handler(231, panics_after_await)
            .register_custom_handler(232, never_called_either)
            .register_custom_handler(233, |Body(b): Body| b),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    for round in 0..2 {
        for opcode in [230, 231, 232] {
            let tx = Uuid::new_v4();
            let e = raw
                .request(FrameFields::new(opcode).transaction_id(Some(tx)))
                .await;
            assert_eq!(e.opcode(), Opcode::Error.0, "opcode {opcode} round {round}");
            assert_eq!(e.error_code(), ErrorCode::Internal);
            assert_eq!(e.transaction_id(), Some(tx));
            let message = e.error_message().unwrap_or_default();
            assert!(!message.contains("secret"), "no leak: {message:?}");

            // The next request on the same connection is served.
            let tx = Uuid::new_v4();
            let r = raw
                .request(
                    FrameFields::new(233)
                        .transaction_id(Some(tx))
                        .payload(b"next"),
                )
                .await;
            assert_eq!(r.opcode(), 233);
            assert_eq!(r.transaction_id(), Some(tx));
            assert_eq!(&r.payload()[..], b"next");
        }
    }
    assert_eq!(server.node().metrics().errors_sent(ErrorCode::Internal), 6);
    server.shutdown().await;
}

fn sync_echo(Body(b): Body) -> Vec<u8> {
    b.to_vec()
}

/// Awaits a little, longer for some requests than others, so that answering out
/// of order would show.
async fn slow_echo(Body(b): Body) -> Vec<u8> {
    let wait = b.first().copied().unwrap_or(0) % 3;
    tokio::time::sleep(Duration::from_millis(u64::from(wait))).await;
    b.to_vec()
}

#[tokio::test]
async fn pipelined_requests_to_sync_and_async_handlers_are_answered_in_order() {
    let server = start(
        App::new()
            .register_custom_handler(240, sync_echo)
            .register_custom_handler(241, slow_echo),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    let sent: Vec<(u16, Uuid, [u8; 2])> = (0..200u16)
        .map(|i| {
            let opcode = if i % 2 == 0 { 240 } else { 241 };
            (opcode, Uuid::new_v4(), [(i % 7) as u8, (i / 7) as u8])
        })
        .collect();
    // Every frame is written before any answer is read.
    for (opcode, tx, payload) in &sent {
        raw.send_fields(
            FrameFields::new(*opcode)
                .transaction_id(Some(*tx))
                .payload(payload),
        )
        .await;
    }
    for (i, (opcode, tx, payload)) in sent.iter().enumerate() {
        let r = raw.next_frame().await.expect("an answer per request");
        assert_eq!(r.transaction_id(), Some(*tx), "answer {i} is out of order");
        assert_eq!(r.opcode(), *opcode, "answer {i}");
        assert_eq!(&r.payload()[..], payload, "answer {i}");
    }
    server.shutdown().await;
}

/// Lets the held handler below return.
#[derive(Default)]
struct Release(tokio::sync::Notify);

/// Closes its own session, then waits to be released.
async fn close_then_hold(conn: Connection, State(release): State<Release>) -> Vec<u8> {
    conn.close(4000, "kicked");
    release.0.notified().await;
    b"late".to_vec()
}

/// A session closed while its handler still waits is closed at once: the close
/// frame goes out then, not when the handler returns (the session is one task,
/// which writes while the handler waits).
#[tokio::test]
async fn a_close_while_the_handler_waits_goes_out_at_once() {
    let server = start(
        App::new()
            .with_state(Release::default())
            .register_custom_handler(242, close_then_hold),
    )
    .await;
    let (mut raw, _) = RawWs::connect(&server).await;
    raw.send_fields(FrameFields::new(242).transaction_id(Some(Uuid::new_v4())))
        .await;
    // Within DEADLINE, while the handler is still waiting.
    assert_eq!(raw.close_code().await, Some(4000));
    let release = server
        .node()
        .state()
        .get::<Release>()
        .expect("Release is registered");
    release.0.notify_one();
    // The session ends once the handler returns.
    let node = server.node().clone();
    framework_tests::eventually("the session ends", DEADLINE, || {
        node.metrics().sessions_active() == 0
    })
    .await;
    server.shutdown().await;
}

struct NeverRegistered;

fn needs_missing_state(State(_): State<NeverRegistered>) -> Vec<u8> {
    b"state is there".to_vec()
}

fn hook_needs_missing_state(State(_): State<NeverRegistered>) -> Result<(), Refusal> {
    Ok(())
}

fn disconnect_hook_needs_missing_state(State(_): State<NeverRegistered>) {}

#[tokio::test]
async fn a_state_never_registered_fails_start_naming_the_handler_and_the_type() {
    match start_err(App::new().register_custom_handler(250, needs_missing_state)).await {
        AppError::MissingState { user, state } => {
            assert!(user.contains("opcode 250"), "names the opcode: {user}");
            assert!(
                user.contains("needs_missing_state"),
                "names the handler: {user}"
            );
            assert!(
                state.ends_with("NeverRegistered"),
                "names the type: {state}"
            );
            let shown = AppError::MissingState {
                user: user.clone(),
                state,
            }
            .to_string();
            assert!(shown.contains(&user) && shown.contains("NeverRegistered"));
            assert!(shown.contains("with_state"), "says how to fix it: {shown}");
        }
        other => panic!("expected MissingState, got {other:?}"),
    }
    // The same for hooks.
    let hook_apps = [
        App::new().on_connect(hook_needs_missing_state),
        App::new().on_disconnect(disconnect_hook_needs_missing_state),
    ];
    for (app, name) in hook_apps.into_iter().zip([
        "hook_needs_missing_state",
        "disconnect_hook_needs_missing_state",
    ]) {
        match start_err(app).await {
            AppError::MissingState { user, state } => {
                assert!(user.contains("hook"), "says it is a hook: {user}");
                assert!(user.contains(name), "names the hook {name}: {user}");
                assert!(state.ends_with("NeverRegistered"), "{state}");
            }
            other => panic!("expected MissingState for {name}, got {other:?}"),
        }
    }

    // Registered, everything starts and the handler sees it.
    let server = start(
        App::new()
            .with_state(NeverRegistered)
            .register_custom_handler(250, needs_missing_state)
            .on_connect(hook_needs_missing_state)
            .on_disconnect(disconnect_hook_needs_missing_state),
    )
    .await;
    let c = client(&server).await;
    assert_eq!(
        &c.request(250, b"").await.unwrap().payload()[..],
        b"state is there"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_failing_broker_factory_fails_start_with_its_cause() {
    let app = App::new().broker(|_id, _hub| async {
        Err::<Arc<dyn Broker>, _>(BrokerError::Unavailable("engine down".into()))
    });
    let err = start_err(app).await;
    assert!(
        matches!(&err, AppError::Broker(BrokerError::Unavailable(m)) if m == "engine down"),
        "expected AppError::Broker, got {err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("broker") && shown.contains("engine down"),
        "Display names the cause: {shown}"
    );
    let source = std::error::Error::source(&err).expect("the BrokerError is the source");
    let broker = source
        .downcast_ref::<BrokerError>()
        .expect("the source is a BrokerError");
    assert_eq!(broker, &BrokerError::Unavailable("engine down".into()));
}

#[tokio::test]
async fn a_broker_factory_returning_the_in_memory_broker_serves_end_to_end() {
    let node_id = Uuid::new_v4();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let server = start(
        App::new()
            .node_id(node_id)
            .broker(move |id, hub| async move {
                tokio::task::yield_now().await; // the factory may await (connect to an engine)
                *seen2.lock().unwrap() = Some(id);
                Ok::<_, BrokerError>(Arc::new(InMemoryBroker::new(id, hub)) as Arc<dyn Broker>)
            }),
    )
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        Some(node_id),
        "the factory got the node id"
    );
    let (alice, bob) = (client(&server).await, client(&server).await);
    assert_eq!(alice.node_id(), node_id);
    bob.subscribe("news").await.unwrap();
    alice
        .publish("news", b"through the factory's broker")
        .await
        .unwrap();
    let d = bob.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!(d.opcode(), Opcode::Publish.0);
    assert_eq!(d.channel(), Some("news"));
    assert_eq!(&d.payload()[..], b"through the factory's broker");
    assert_eq!(d.emitter_id(), Some(alice.session_id()));
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_frames_by_opcode_name_including_welcome() {
    let server = App::new()
        .register_custom_handler(260, |Body(b): Body| b)
        .run_service(any_port())
        .start()
        .await
        .expect("server starts");
    let addr = server.service_addr();
    let url = format!("ws://{addr}/ws");
    const CLIENTS: usize = 3;
    const PINGS: usize = 5;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            framework::client::Client::connect(&url)
                .await
                .expect("connects"),
        );
    }
    let c = &clients[0];
    for _ in 0..PINGS {
        c.ping().await.unwrap();
    }
    c.subscribe("room").await.unwrap();
    c.publish("room", b"hello").await.unwrap();
    c.request(260, b"app").await.unwrap();
    c.request(261, b"unknown app opcode").await.unwrap_err();
    expect_server_error(
        c.call(FrameFields::new(150)).await,
        ErrorCode::UnknownOpcode,
    );
    // The delivery to the subscriber itself is counted too.
    let delivery = c.recv_timeout(DEADLINE).await.expect("own delivery");
    assert_eq!(delivery.opcode(), Opcode::Publish.0);

    let text = http::get(addr, "/metrics").await.text();
    let sample = |name: &str, opcode: &str| {
        metric(&text, &format!("{name}{{opcode=\"{opcode}\"}}"))
            .unwrap_or_else(|| panic!("{name}{{opcode={opcode:?}}} missing from:\n{text}"))
    };
    let n = CLIENTS as f64;
    assert_eq!(sample("framework_frames_out_total", "Welcome"), n);
    assert!(sample("framework_bytes_out_total", "Welcome") > 0.0);
    assert_eq!(sample("framework_frames_in_total", "Ping"), PINGS as f64);
    assert!(sample("framework_bytes_in_total", "Ping") > 0.0);
    assert_eq!(sample("framework_frames_out_total", "Pong"), PINGS as f64);
    assert_eq!(sample("framework_frames_in_total", "Subscribe"), 1.0);
    assert_eq!(sample("framework_frames_in_total", "Publish"), 1.0);
    // Acks for Subscribe and Publish; the delivery of the publish.
    assert_eq!(sample("framework_frames_out_total", "Ack"), 2.0);
    assert_eq!(sample("framework_frames_out_total", "Publish"), 1.0);
    assert_eq!(sample("framework_frames_in_total", "application"), 2.0);
    assert_eq!(sample("framework_frames_out_total", "application"), 1.0);
    assert_eq!(sample("framework_frames_in_total", "reserved"), 1.0);
    assert_eq!(sample("framework_frames_out_total", "Error"), 2.0);
    assert_eq!(
        metric(&text, r#"framework_errors_total{code="UnknownOpcode"}"#),
        Some(2.0)
    );
    // Labels are opcode names, never numbers.
    for l in text.lines().filter(|l| l.starts_with("framework_frames_")) {
        let label = l
            .split_once("opcode=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(label, _)| label)
            .unwrap_or_else(|| panic!("no opcode label in {l}"));
        assert!(
            label.chars().all(|c| c.is_ascii_alphabetic()),
            "label {label:?} is a name"
        );
    }
    // The node's counters say the same.
    let m = server.node().metrics();
    assert_eq!(m.sent.frames(Opcode::Welcome.0), CLIENTS as u64);
    assert_eq!(m.received.frames(Opcode::Ping.0), PINGS as u64);
    server.shutdown().await;
}
