//! Fuzzing a running server over one real WebSocket connection.
//!
//! Proptest generates sequences of arbitrary binary messages, buffers that carry the
//! `FWK1` identifier but random contents, valid frames with random fields (opcodes
//! `0..=20`, `200+` and any `u16`; empty, long, non-ASCII and control-character
//! channels; own/other/nil/random receiver ids) that are then bit-flipped, extended,
//! shortened or overwritten, and text messages. After every sequence:
//!
//! - the fuzzed connection still answers a `Ping` with its `Pong` (it never died and
//!   its replies stayed in order),
//! - exactly the inputs that the decoder rejects (and the text messages) were answered
//!   with `Error`/`BadFrame`, and every server frame verifies,
//! - a second, quiet connection still answers a `Ping`.
//!
//! Runtime is bounded: 64 cases of at most 8 messages on a local socket.

use bytes::Bytes;
use framework::protocol::{DecodeLimits, ErrorCode, Frame, FrameFields, Opcode};
use framework::{App, AppHandle};
use framework_tests::RawWs;
use futures_util::SinkExt;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Which session id a fuzzed frame names as `receiver_id`.
#[derive(Debug, Clone)]
enum Receiver {
    Absent,
    Own,
    Other,
    Nil,
    Random(u128),
}

/// A corruption applied to an encoded frame (positions are taken modulo its length).
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { len: usize },
    Overwrite32 { at: usize, value: u32 },
}

/// A frame with random fields, encoded with `FrameFields` and then mutated.
#[derive(Debug, Clone)]
struct FrameSpec {
    opcode: u16,
    transaction_id: Option<u128>,
    requires_ack: bool,
    channel: Option<String>,
    receiver: Receiver,
    emitter_id: Option<u128>,
    payload: Option<Vec<u8>>,
    token: Option<String>,
    trace_id: Option<u128>,
    span_id: u64,
    error_code: u16,
    mutations: Vec<Mutation>,
}

/// One WebSocket message sent to the server.
#[derive(Debug, Clone)]
enum Input {
    Binary(Vec<u8>),
    Frame(Box<FrameSpec>),
    Text(String),
}

fn opcode() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => 0u16..=20,
        2 => 200u16..=203,
        1 => any::<u16>(),
    ]
}

fn channel() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        // A few names, so subscribes and publishes meet.
        3 => "fz[0-3]".prop_map(Some),
        1 => "[a-z]{250,260}".prop_map(Some),
        1 => "[a-z\\x00-\\x1f\\x7f]{1,12}".prop_map(Some),
        1 => vec(any::<char>(), 0..24).prop_map(|c| Some(c.into_iter().collect())),
    ]
}

fn receiver() -> impl Strategy<Value = Receiver> {
    prop_oneof![
        Just(Receiver::Absent),
        Just(Receiver::Own),
        Just(Receiver::Other),
        Just(Receiver::Nil),
        any::<u128>().prop_map(Receiver::Random),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), any::<u32>()).prop_map(|(at, value)| Mutation::Overwrite32 { at, value }),
    ]
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        (
            opcode(),
            proptest::option::of(any::<u128>()),
            any::<bool>(),
            channel(),
            receiver(),
            proptest::option::of(any::<u128>()),
        ),
        (
            proptest::option::of(vec(any::<u8>(), 0..256)),
            proptest::option::of("[ -~]{0,40}"),
            proptest::option::of(any::<u128>()),
            any::<u64>(),
            any::<u16>(),
            // A third of the frames stay valid so they reach the handlers.
            prop_oneof![1 => Just(Vec::new()), 2 => vec(mutation(), 1..4)],
        ),
    )
        .prop_map(
            |(
                (opcode, transaction_id, requires_ack, channel, receiver, emitter_id),
                (payload, token, trace_id, span_id, error_code, mutations),
            )| FrameSpec {
                opcode,
                transaction_id,
                requires_ack,
                channel,
                receiver,
                emitter_id,
                payload,
                token,
                trace_id,
                span_id,
                error_code,
                mutations,
            },
        )
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => vec(any::<u8>(), 0..512).prop_map(Input::Binary),
        // Past the identifier check, into the verifier.
        2 => (0u32..64, vec(any::<u8>(), 0..256)).prop_map(|(root, tail)| {
            let mut b = root.to_le_bytes().to_vec();
            b.extend_from_slice(b"FWK1");
            b.extend(tail);
            Input::Binary(b)
        }),
        5 => frame_spec().prop_map(|f| Input::Frame(Box::new(f))),
        1 => ".{0,64}".prop_map(Input::Text),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match *m {
        Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Mutation::Remove { at } if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::Truncate { len: to } => bytes.truncate(to % (len + 1)),
        Mutation::Overwrite32 { at, value } if len >= 4 => {
            let at = at % (len - 3);
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        _ => {}
    }
}

/// The bytes of a fuzzed frame, with `Own`/`Other` resolved to real session ids.
fn encode(spec: &FrameSpec, own: Uuid, other: Uuid) -> Vec<u8> {
    let receiver_id = match spec.receiver {
        Receiver::Absent => None,
        Receiver::Own => Some(own),
        Receiver::Other => Some(other),
        Receiver::Nil => Some(Uuid::nil()),
        Receiver::Random(n) => Some(Uuid::from_u128(n)),
    };
    let fields = FrameFields {
        opcode: spec.opcode,
        transaction_id: spec.transaction_id.map(Uuid::from_u128),
        requires_ack: spec.requires_ack,
        channel: spec.channel.as_deref(),
        receiver_id,
        emitter_id: spec.emitter_id.map(Uuid::from_u128),
        payload: spec.payload.as_deref(),
        token: spec.token.as_deref(),
        trace_id: spec.trace_id.map(Uuid::from_u128),
        span_id: spec.span_id,
        error_code: ErrorCode(spec.error_code),
        ..FrameFields::default()
    };
    let mut bytes = fields.encode().to_vec();
    for m in &spec.mutations {
        apply(&mut bytes, m);
    }
    bytes
}

/// The two connections the fuzz keeps open across cases.
struct Peers {
    fuzzed: Option<(RawWs, Uuid)>,
    quiet: Option<(RawWs, Uuid)>,
    /// Messages sent on the fuzzed connection, and how many of them were valid frames
    /// (so reached the dispatcher).
    sent: usize,
    dispatched: usize,
}

async fn connect(server: &AppHandle) -> (RawWs, Uuid) {
    let (ws, welcome) = RawWs::connect(server).await;
    let id = welcome.receiver_id().expect("Welcome carries receiver_id");
    (ws, id)
}

/// Sends a `Ping` and reads until its `Pong`; returns how many `BadFrame` errors
/// arrived before it. Fails when the connection closed, stalled or sent a frame that
/// does not verify.
async fn ping_and_count_bad_frames(ws: &mut RawWs, who: &str) -> Result<usize, TestCaseError> {
    let tx = Uuid::new_v4();
    let ping = FrameFields::new(Opcode::Ping.0)
        .transaction_id(Some(tx))
        .encode();
    ws.ws
        .send(Message::Binary(ping))
        .await
        .map_err(|e| TestCaseError::fail(format!("{who}: cannot send Ping: {e}")))?;
    let mut bad_frames = 0;
    loop {
        // `next_message` gives up after 10 s.
        let msg = ws.next_message().await.ok_or_else(|| {
            TestCaseError::fail(format!("{who}: connection ended or stalled before Pong"))
        })?;
        let bytes = match msg {
            Message::Binary(b) => b,
            Message::Close(c) => {
                return Err(TestCaseError::fail(format!(
                    "{who}: server closed the connection: {c:?}"
                )))
            }
            Message::Text(t) => {
                return Err(TestCaseError::fail(format!(
                    "{who}: server sent a text message: {t:?}"
                )))
            }
            _ => continue,
        };
        let frame = Frame::decode(bytes, &DecodeLimits::for_max_size(64 << 20)).map_err(|e| {
            TestCaseError::fail(format!("{who}: server frame does not verify: {e}"))
        })?;
        if frame.opcode() == Opcode::Pong.0 && frame.transaction_id() == Some(tx) {
            return Ok(bad_frames);
        }
        if frame.opcode() == Opcode::Error.0 && frame.error_code() == ErrorCode::BadFrame {
            if frame.transaction_id().is_some() {
                return Err(TestCaseError::fail(format!(
                    "{who}: BadFrame error carries a transaction_id: {frame:?}"
                )));
            }
            bad_frames += 1;
        }
    }
}

/// Sends one case's inputs on the fuzzed connection and checks both connections.
async fn run_case(
    server: &AppHandle,
    peers: &mut Peers,
    inputs: &[Input],
) -> Result<(), TestCaseError> {
    // A previous failing case may have killed a connection; start the next one fresh
    // so shrinking looks for the input that kills a healthy connection.
    if peers.fuzzed.is_none() {
        peers.fuzzed = Some(connect(server).await);
    }
    if peers.quiet.is_none() {
        peers.quiet = Some(connect(server).await);
    }
    let other = peers.quiet.as_ref().map(|q| q.1).unwrap_or_default();
    let (ws, own) = peers.fuzzed.as_mut().expect("connected above");
    let limits = DecodeLimits::default();
    let mut expected_bad = 0;
    for input in inputs {
        let msg = match input {
            Input::Text(t) => {
                expected_bad += 1;
                Message::text(t.clone())
            }
            Input::Binary(b) => Message::Binary(Bytes::from(b.clone())),
            Input::Frame(spec) => Message::Binary(Bytes::from(encode(spec, *own, other))),
        };
        if let Message::Binary(b) = &msg {
            match Frame::decode(b.clone(), &limits) {
                Ok(_) => peers.dispatched += 1,
                Err(_) => expected_bad += 1,
            }
        }
        peers.sent += 1;
        if let Err(e) = ws.ws.send(msg).await {
            peers.fuzzed = None;
            return Err(TestCaseError::fail(format!("fuzzed: send failed: {e}")));
        }
    }
    let result = ping_and_count_bad_frames(ws, "fuzzed").await;
    let bad = match result {
        Ok(n) => n,
        Err(e) => {
            peers.fuzzed = None;
            return Err(e);
        }
    };
    if bad != expected_bad {
        return Err(TestCaseError::fail(format!(
            "fuzzed: {bad} BadFrame errors, but {expected_bad} inputs were undecodable or text"
        )));
    }
    let (quiet, _) = peers.quiet.as_mut().expect("connected above");
    match ping_and_count_bad_frames(quiet, "quiet").await {
        Ok(0) => Ok(()),
        // Another session's garbage must never be answered on this one.
        Ok(n) => Err(TestCaseError::fail(format!(
            "quiet: received {n} BadFrame errors it did not cause"
        ))),
        Err(e) => {
            peers.quiet = None;
            Err(e)
        }
    }
}

#[test]
fn arbitrary_input_never_kills_a_connection() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(framework_tests::start(
        App::new().register_custom_handler(200, |ctx: framework::Request| {
            ctx.body().iter().rev().copied().collect::<Vec<u8>>()
        }),
    ));
    let peers = tokio::sync::Mutex::new(Peers {
        fuzzed: None,
        quiet: None,
        sent: 0,
        dispatched: 0,
    });

    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 256,
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&vec(input(), 1..8), |inputs| {
        rt.block_on(async {
            let mut peers = peers.lock().await;
            run_case(&server, &mut peers, &inputs).await
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }

    rt.block_on(async {
        let mut peers = peers.lock().await;
        println!(
            "{} messages sent, {} of them valid frames",
            peers.sent, peers.dispatched
        );
        assert!(
            peers.dispatched >= 10,
            "too few valid frames reached the dispatcher"
        );
        // Both long-lived connections and a fresh one are healthy at the end.
        let (ws, _) = peers.fuzzed.as_mut().expect("fuzzed connection alive");
        ping_and_count_bad_frames(ws, "fuzzed").await.unwrap();
        let (ws, _) = peers.quiet.as_mut().expect("quiet connection alive");
        ping_and_count_bad_frames(ws, "quiet").await.unwrap();
        let (mut fresh, _) = connect(&server).await;
        assert_eq!(
            ping_and_count_bad_frames(&mut fresh, "fresh")
                .await
                .unwrap(),
            0
        );
        drop(peers);
        server.shutdown().await;
    });
}
