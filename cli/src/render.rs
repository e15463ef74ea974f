//! Frames as JSON lines: what `fw` prints for every frame it receives.
//!
//! A frame prints as one JSON object with the fields it carries, in this order:
//! `opcode` (its name, e.g. `"Publish"`, or its number as a string for an
//! application opcode, e.g. `"200"`), `transaction_id`, `channel`, `receiver_id`,
//! `emitter_id`, `user_id`, `offset` and `epoch` (when the channel has history),
//! `recovered`, `trace_id`, `error_code`, `error_message`, `retry_after_ms`, then
//! the payload: `payload` as a string when it is UTF-8 text (no control
//! characters but tab, newline and carriage return), else `payload_base64`;
//! `client` for the `ClientInfo` of a `Join` or `Leave`; and, when a schema and a
//! table are given, `decoded` (the payload as JSON) or `decode_error`.
//!
//! ```
//! use framework::protocol::{DecodeLimits, Frame, FrameFields, Opcode};
//! let bytes = FrameFields::new(Opcode::Publish.0).channel("news").payload(b"hi").encode();
//! let frame = Frame::decode(bytes, &DecodeLimits::default()).unwrap();
//! let line = framework_cli::render::frame(&frame, None).to_string();
//! assert_eq!(line, r#"{"opcode":"Publish","channel":"news","payload":"hi"}"#);
//! ```

use base64::Engine as _;
use framework::client::{HistoryPage, Presence, Publication};
use framework::protocol::{fbs, ErrorCode, Frame, Opcode};
use uuid::Uuid;

use crate::json::Json;
use crate::schema::Schema;

/// A schema and the table payloads are decoded as.
#[derive(Debug, Clone, Copy)]
pub struct PayloadType {
    /// The schema.
    pub schema: Schema,
    /// The table, fully qualified.
    pub table: &'static str,
}

/// An opcode's name (`"Publish"`), or its number as a string (`"200"`).
pub fn opcode_name(opcode: u16) -> String {
    match Opcode(opcode).variant_name() {
        Some(name) => name.to_string(),
        None => opcode.to_string(),
    }
}

/// An error code's name (`"NotFound"`), or its number.
pub fn error_code_name(code: ErrorCode) -> String {
    match code.variant_name() {
        Some(name) => name.to_string(),
        None => code.0.to_string(),
    }
}

/// Whether `bytes` print as text: UTF-8 without control characters other than
/// tab, newline and carriage return.
pub fn is_text(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        Err(_) => false,
    }
}

/// The payload members: `payload` (text) or `payload_base64`, then `decoded` or
/// `decode_error` when `decode` is given.
pub fn payload_members(
    payload: &[u8],
    decode: Option<&PayloadType>,
    members: &mut Vec<(String, Json)>,
) {
    if is_text(payload) {
        members.push((
            "payload".into(),
            Json::from(String::from_utf8_lossy(payload).into_owned()),
        ));
    } else {
        members.push((
            "payload_base64".into(),
            Json::from(base64::engine::general_purpose::STANDARD.encode(payload)),
        ));
    }
    if let Some(t) = decode {
        match t.schema.decode(t.table, payload) {
            Ok(json) => members.push(("decoded".into(), json)),
            Err(e) => members.push((
                "decode_error".into(),
                Json::from(format!("not a {}: {e}", t.table)),
            )),
        }
    }
}

fn uuid(id: Uuid) -> Json {
    Json::from(id.to_string())
}

/// A frame as a JSON object (see the module's documentation). `decode` decodes
/// the payloads of deliveries (`Publish`, `Send`, `Broadcast`) and of application
/// opcodes.
pub fn frame(frame: &Frame, decode: Option<&PayloadType>) -> Json {
    let mut m: Vec<(String, Json)> = Vec::new();
    let opcode = frame.opcode();
    m.push(("opcode".into(), Json::from(opcode_name(opcode))));
    if let Some(tx) = frame.transaction_id() {
        m.push(("transaction_id".into(), uuid(tx)));
    }
    if let Some(channel) = frame.channel() {
        m.push(("channel".into(), Json::from(channel)));
    }
    if let Some(id) = frame.receiver_id() {
        m.push(("receiver_id".into(), uuid(id)));
    }
    if let Some(id) = frame.emitter_id() {
        m.push(("emitter_id".into(), uuid(id)));
    }
    if let Some(user) = frame.user_id().filter(|u| !u.is_empty()) {
        m.push(("user_id".into(), Json::from(user)));
    }
    if frame.offset() != 0 {
        m.push(("offset".into(), Json::from(frame.offset())));
    }
    if let Some(epoch) = frame.epoch().filter(|e| !e.is_empty()) {
        m.push(("epoch".into(), Json::from(epoch)));
    }
    if frame.recovered() {
        m.push(("recovered".into(), Json::Bool(true)));
    }
    if let Some(id) = frame.node_id() {
        m.push(("node_id".into(), uuid(id)));
    }
    if frame.expires_at_ms() != 0 {
        m.push(("expires_at_ms".into(), Json::from(frame.expires_at_ms())));
    }
    if let Some(id) = frame.trace_id() {
        m.push(("trace_id".into(), uuid(id)));
    }
    if frame.error_code() != ErrorCode::None {
        m.push((
            "error_code".into(),
            Json::from(error_code_name(frame.error_code())),
        ));
    }
    if let Some(message) = frame.error_message() {
        m.push(("error_message".into(), Json::from(message)));
    }
    if frame.retry_after_ms() != 0 {
        m.push((
            "retry_after_ms".into(),
            Json::from(u64::from(frame.retry_after_ms())),
        ));
    }
    if frame.has_payload() {
        let payload = frame.payload();
        let op = Opcode(opcode);
        let delivery = matches!(op, Opcode::Publish | Opcode::Send | Opcode::Broadcast)
            || opcode >= framework::protocol::FIRST_APPLICATION_OPCODE;
        payload_members(&payload, decode.filter(|_| delivery), &mut m);
        if matches!(op, Opcode::Join | Opcode::Leave) {
            if let Ok(info) = flatbuffers::root::<fbs::ClientInfo<'_>>(&payload) {
                m.push(("client".into(), client_info(&info)));
            }
        }
    }
    Json::Object(m)
}

fn client_info(info: &fbs::ClientInfo<'_>) -> Json {
    let mut m: Vec<(String, Json)> = Vec::new();
    let id = |u: &fbs::Uuid| Uuid::from_bytes(u.bytes().into());
    if let Some(s) = info.session_id() {
        m.push(("session_id".into(), uuid(id(s))));
    }
    if let Some(n) = info.node_id() {
        m.push(("node_id".into(), uuid(id(n))));
    }
    if let Some(u) = info.user_id().filter(|u| !u.is_empty()) {
        m.push(("user_id".into(), Json::from(u)));
    }
    if let Some(bytes) = info.info() {
        payload_members(bytes.bytes(), None, &mut m);
    }
    Json::Object(m)
}

/// A retained publication, shaped like the `Publish` delivery it was.
pub fn publication(
    channel: &str,
    epoch: &str,
    p: &Publication,
    decode: Option<&PayloadType>,
) -> Json {
    let mut m: Vec<(String, Json)> = vec![
        ("opcode".into(), Json::from("Publish")),
        ("channel".into(), Json::from(channel)),
    ];
    if let Some(id) = p.emitter_id {
        m.push(("emitter_id".into(), uuid(id)));
    }
    if !p.user_id.is_empty() {
        m.push(("user_id".into(), Json::from(p.user_id.as_str())));
    }
    m.push(("offset".into(), Json::from(p.offset)));
    m.push(("epoch".into(), Json::from(epoch)));
    if let Some(id) = p.trace_id {
        m.push(("trace_id".into(), uuid(id)));
    }
    payload_members(&p.payload, decode, &mut m);
    Json::Object(m)
}

/// A history page: `{"channel", "epoch", "offset", "publications": [...]}`.
pub fn history(channel: &str, page: &HistoryPage, decode: Option<&PayloadType>) -> Json {
    Json::object([
        ("channel", Json::from(channel)),
        ("epoch", Json::from(page.epoch.as_str())),
        ("offset", Json::from(page.offset)),
        (
            "publications",
            Json::Array(
                page.publications
                    .iter()
                    .map(|p| publication(channel, &page.epoch, p, decode))
                    .collect(),
            ),
        ),
    ])
}

/// A channel's presence: `{"channel", "num_clients", "num_users", "clients": [...]}`.
pub fn presence(channel: &str, presence: &Presence) -> Json {
    let clients = presence
        .clients
        .iter()
        .map(|c| {
            let mut m: Vec<(String, Json)> = vec![
                ("session_id".into(), uuid(c.session)),
                ("node_id".into(), uuid(c.node)),
            ];
            if !c.user_id.is_empty() {
                m.push(("user_id".into(), Json::from(c.user_id.as_str())));
            }
            if !c.info.is_empty() {
                payload_members(&c.info, None, &mut m);
            }
            Json::Object(m)
        })
        .collect();
    Json::object([
        ("channel", Json::from(channel)),
        ("num_clients", Json::from(presence.num_clients)),
        ("num_users", Json::from(presence.num_users)),
        ("clients", Json::Array(clients)),
    ])
}
