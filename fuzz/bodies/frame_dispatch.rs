//! Fuzz body `frame_dispatch`: untrusted bytes through `Frame::decode`; a frame
//! that decodes has every field read and then goes through the real request
//! pipeline of an in-process node (`TestNode`, built once per thread on a
//! current-thread runtime) with authentication, channel rules, quotas, the
//! built-ins and application handlers of every kind: a typed (derived) message, a
//! borrowed flatc table, an async owned table, handlers returning errors, one
//! taking the sender's identity. Checked: nothing panics, every frame queued to
//! the session decodes as a frame, the session is not closed. Between inputs the
//! session leaves its channels and drops a token's identity, so each input starts
//! from the same state (quotas, time-based, are the exception). A frame that
//! decodes also round-trips: its fields, encoded again with `FrameFields`, decode
//! to the same fields, and encoding those gives the same bytes. And
//! `Frame::decode` accepts exactly what flatbuffers' generated verifier accepts
//! under the same limits (the decoder checks with its own code first).
//!
//! Shared by the cargo-fuzz target (`fuzz/fuzz_targets/frame_dispatch.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`), which include this file by path.

use bytes::Bytes;
use framework::config::{AuthConfig, ChannelRule, Grant, QuotaRule, QuotaScope, Rate};
use framework::dispatch::{Body, Table};
use framework::node::Identity;
use framework::protocol::{
    fbs, DecodeLimits, ErrorCode, Frame, FrameFields, Opcode, FILE_IDENTIFIER,
};
use framework::testing::TestNode;
use framework::{App, Config, HandlerError, Message};
use uuid::Uuid;

/// The HS256 secret of the node's `auth`.
pub const SECRET: &str = "fuzzing-secret-of-32-bytes-long!";

/// A typed message for handler 200.
#[derive(Message, Debug, Clone, Default, PartialEq)]
pub struct Line {
    room: String,
    text: String,
    id: Option<Uuid>,
    tags: Vec<String>,
}

/// 200: a typed message in, a typed message (or an error) out.
fn typed(line: Line) -> Result<Line, HandlerError> {
    if line.text.is_empty() {
        return Err(HandlerError::bad_payload("empty text"));
    }
    Ok(Line {
        text: line.text.chars().rev().collect(),
        ..line
    })
}

/// 201: a flatc table borrowed from the payload.
fn borrowed(msg: fbs::Message<'_>) -> Vec<u8> {
    format!(
        "{} {:?} {:?} {:?}",
        msg.opcode().0,
        msg.channel(),
        msg.payload().map(|p| p.len()),
        msg.token()
    )
    .into_bytes()
}

/// 202: an async handler owning a flatc table.
async fn owned(msg: Table<fbs::Message<'static>>) -> Vec<u8> {
    tokio::task::yield_now().await;
    let t = msg.get();
    let mut out = t.channel().unwrap_or_default().as_bytes().to_vec();
    out.extend_from_slice(t.payload().map(|p| p.bytes()).unwrap_or_default());
    out
}

/// 203: an error chosen by the payload's first byte.
fn failing(Body(body): Body) -> Result<Vec<u8>, HandlerError> {
    match body.first().copied().unwrap_or(0) % 6 {
        0 => Err(HandlerError::new(ErrorCode::Forbidden, "no")),
        1 => Err(HandlerError::rate_limited(u32::from(body.len() as u16))),
        2 => Err(HandlerError::not_found(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        3 => Err(HandlerError::bad_payload("\u{0}\n\t bad")),
        4 => Err(HandlerError::new(ErrorCode(u16::MAX), "unnamed code")),
        _ => Ok(body.to_vec()),
    }
}

/// 204: an async handler that errs after a yield.
async fn failing_later(Body(body): Body) -> Result<Vec<u8>, HandlerError> {
    tokio::task::yield_now().await;
    if body.len() % 2 == 0 {
        Err(HandlerError::not_found("nothing here"))
    } else {
        Ok(body.to_vec())
    }
}

/// 205: only for a sender with a token.
fn whoami(id: Identity) -> Vec<u8> {
    id.user_id().as_bytes().to_vec()
}

fn grants(list: &[&str]) -> Option<Vec<Grant>> {
    Some(list.iter().map(|g| g.parse().expect("a grant")).collect())
}

fn app() -> App {
    let huge = Rate::per_second(1_000_000_000).burst(1_000_000_000);
    App::new()
        .config(Config {
            auth: Some(AuthConfig::hs256(SECRET)),
            channels: vec![
                ChannelRule {
                    publish: grants(&["nobody"]),
                    ..ChannelRule::new("news:*")
                },
                ChannelRule {
                    subscribe: grants(&["authenticated"]),
                    publish: grants(&["authenticated"]),
                    ..ChannelRule::new("private:{sub}")
                },
                ChannelRule {
                    subscribe: grants(&["claim:teams~{channel}", "claim:role=admin"]),
                    ..ChannelRule::new("team:*")
                },
            ],
            permissions: framework::config::Permissions {
                broadcast: grants(&["claim:role=admin"]),
                ..Default::default()
            },
            // The quota path runs on every frame; rates no fuzzer reaches.
            quotas: vec![
                QuotaRule::opcode(Opcode::Publish)
                    .channel("q:*")
                    .frames(huge)
                    .bytes(huge),
                QuotaRule::opcode(Opcode::Subscribe)
                    .per(QuotaScope::Ip)
                    .frames(huge),
            ],
            ..Config::default()
        })
        .register_custom_handler(200, typed)
        .register_custom_handler(201, borrowed)
        .register_custom_handler(202, owned)
        .register_custom_handler(203, failing)
        .register_custom_handler(204, failing_later)
        .register_custom_handler(205, whoami)
        .require(205, [Grant::Authenticated])
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    node: TestNode,
    limits: DecodeLimits,
}

thread_local! {
    static FIXTURE: Fixture = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let node = rt.block_on(TestNode::new(app())).expect("the node starts");
        let limits = DecodeLimits::for_max_size(node.node().config().max_message_size);
        Fixture { rt, node, limits }
    };
}

/// Reads every field of a verified frame (the accessors follow its offsets).
fn read_all(frame: &Frame) {
    let _ = (
        frame.opcode(),
        frame.opcode_enum(),
        frame.transaction_id(),
        frame.requires_ack(),
        frame.channel(),
        frame.receiver_id(),
        frame.emitter_id(),
        frame.payload(),
        frame.has_payload(),
        frame.token(),
        frame.trace_id(),
        frame.span_id(),
        frame.parent_span_id(),
        frame.error_code(),
        frame.error_message(),
        frame.node_id(),
        frame.retry_after_ms(),
    );
    let _ = (
        frame.offset(),
        frame.epoch(),
        frame.recover(),
        frame.recovered(),
        frame.limit(),
        frame.user_id(),
        frame.expires_at_ms(),
    );
    let _ = format!("{frame:?}");
}

/// Every field of a verified frame, as `FrameFields` to encode it again.
fn fields(frame: &Frame) -> FrameFields<'_> {
    let msg = frame.message();
    FrameFields {
        opcode: frame.opcode(),
        transaction_id: frame.transaction_id(),
        requires_ack: frame.requires_ack(),
        channel: frame.channel(),
        receiver_id: frame.receiver_id(),
        emitter_id: frame.emitter_id(),
        payload: msg.payload().map(|p| p.bytes()),
        token: frame.token(),
        trace_id: frame.trace_id(),
        span_id: frame.span_id(),
        parent_span_id: frame.parent_span_id(),
        error_code: frame.error_code(),
        error_message: frame.error_message(),
        node_id: frame.node_id(),
        retry_after_ms: frame.retry_after_ms(),
        offset: frame.offset(),
        epoch: frame.epoch(),
        recover: frame.recover(),
        recovered: frame.recovered(),
        limit: frame.limit(),
        user_id: frame.user_id(),
        expires_at_ms: frame.expires_at_ms(),
    }
}

/// decode → encode → decode gives the same fields; encoding is then stable.
fn round_trip(frame: &Frame, limits: &DecodeLimits) {
    let original = fields(frame);
    assert_eq!(original.payload.is_some(), frame.has_payload());
    let encoded = original.encode();
    // Strings and vectors the input shared are written once per field now.
    let roomy = DecodeLimits::for_max_size(limits.max_size.saturating_mul(8) + 1024);
    let again = Frame::decode(encoded.clone(), &roomy)
        .unwrap_or_else(|e| panic!("a re-encoded frame does not decode ({e}): {frame:?}"));
    let decoded = fields(&again);
    assert_eq!(format!("{original:?}"), format!("{decoded:?}"));
    assert_eq!(decoded.encode(), encoded, "re-encoding is stable");
}

/// Whether flatbuffers' generated verifier takes `data` as a frame under
/// `limits`, after the checks `Frame::decode` makes before verifying (not
/// empty, within the size, the file identifier).
fn the_generated_verifier_accepts(data: &[u8], limits: &DecodeLimits) -> bool {
    if data.len() < 8 || data.len() > limits.max_size || &data[4..8] != FILE_IDENTIFIER.as_bytes() {
        return false;
    }
    flatbuffers::root_with_opts::<fbs::Message<'_>>(&limits.verifier_options(), data).is_ok()
}

/// The fuzz body.
pub fn run(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    FIXTURE.with(|f| {
        let decoded = Frame::decode(bytes.clone(), &f.limits);
        assert_eq!(
            decoded.is_ok(),
            the_generated_verifier_accepts(data, &f.limits),
            "Frame::decode and the generated verifier disagree ({decoded:?}): {data:?}"
        );
        let Ok(frame) = decoded else {
            return;
        };
        read_all(&frame);
        round_trip(&frame, &f.limits);
        let conn = f.node.connection();
        let replies = f.rt.block_on(f.node.dispatch(bytes));
        for reply in replies {
            let reply = Frame::decode(reply.clone(), &f.limits)
                .unwrap_or_else(|e| panic!("a reply that is not a frame ({e}): {reply:?}"));
            read_all(&reply);
            round_trip(&reply, &f.limits);
        }
        assert!(!conn.is_closing(), "the session was closed");
        // The next input starts from the same session state.
        f.rt.block_on(async {
            for channel in conn.channels() {
                let _ = f.node.node().unsubscribe(conn, &channel).await;
            }
        });
        conn.remove_extension::<Identity>();
        let _ = f.node.take_queued();
    });
}

/// A token the node accepts (`sub` "ada", admin of team red), signed with
/// [`SECRET`].
pub fn token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 10 * 365 * 24 * 3600;
    let claims = serde_json::json!({
        "sub": "ada", "exp": exp, "role": "admin", "teams": ["team:red"],
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

/// Seed inputs: a frame for each built-in and handler, with and without a token.
pub fn seeds() -> Vec<Vec<u8>> {
    let token = token();
    let line = Line {
        room: "r".into(),
        text: "hello".into(),
        id: Some(Uuid::from_u128(5)),
        tags: vec!["t".into()],
    }
    .encode();
    let table = FrameFields::new(Opcode::Publish.0)
        .channel("inner")
        .payload(b"nested")
        .encode();
    let tx = Some(Uuid::from_u128(1));
    let mut out: Vec<Bytes> = vec![
        FrameFields::new(Opcode::Ping.0).transaction_id(tx).encode(),
        FrameFields::new(Opcode::Subscribe.0)
            .channel("room")
            .transaction_id(tx)
            .requires_ack(true)
            .encode(),
        FrameFields::new(Opcode::Subscribe.0)
            .channel("private:ada")
            .token(&token)
            .encode(),
        FrameFields::new(Opcode::Subscribe.0)
            .channel("team:red")
            .recover(true)
            .offset(3)
            .epoch("e")
            .encode(),
        FrameFields::new(Opcode::Unsubscribe.0)
            .channel("room")
            .encode(),
        FrameFields::new(Opcode::Publish.0)
            .channel("q:room")
            .payload(b"hi")
            .requires_ack(true)
            .encode(),
        FrameFields::new(Opcode::Publish.0)
            .channel("news:today")
            .payload(b"x")
            .encode(),
        FrameFields::new(Opcode::Send.0)
            .receiver_id(Some(Uuid::from_u128(9)))
            .payload(b"dm")
            .encode(),
        FrameFields::new(Opcode::Broadcast.0)
            .payload(b"all")
            .token(&token)
            .encode(),
        FrameFields::new(Opcode::Auth.0).token(&token).encode(),
        FrameFields::new(Opcode::Auth.0)
            .token("not.a.token")
            .encode(),
        FrameFields::new(Opcode::Presence.0)
            .channel("room")
            .encode(),
        FrameFields::new(Opcode::History.0)
            .channel("room")
            .limit(10)
            .encode(),
        FrameFields::new(200).payload(&line).encode(),
        FrameFields::new(200).payload(b"junk").encode(),
        FrameFields::new(201).payload(&table).encode(),
        FrameFields::new(202).payload(&table).encode(),
        FrameFields::new(203).payload(&[2, 1]).encode(),
        FrameFields::new(204).payload(&[1]).encode(),
        FrameFields::new(205).token(&token).encode(),
        FrameFields::new(206)
            .trace_id(Some(Uuid::from_u128(3)))
            .span_id(4)
            .encode(),
    ];
    out.push(FrameFields::new(Opcode::Publish.0).channel("room").encode());
    out.into_iter().map(|b| b.to_vec()).collect()
}
