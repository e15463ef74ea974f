use std::cell::RefCell;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use uuid::Uuid;

use super::{fbs, to_fbs_uuid, ErrorCode, Opcode, FILE_IDENTIFIER};

thread_local! {
    // Encoding on hot paths (fan-out, replies) reuses one builder per thread.
    static BUILDER: RefCell<FlatBufferBuilder<'static>> =
        RefCell::new(FlatBufferBuilder::with_capacity(1024));
}

/// The fields of an outgoing protocol frame. Unset fields are left out of the
/// encoded table. Borrowed strings and payloads are copied only into the encoding.
///
/// ```
/// use framework::protocol::{FrameFields, Opcode};
/// let frame = FrameFields::new(Opcode::Publish.0)
///     .channel("news")
///     .payload(b"hello")
///     .encode();
/// assert_eq!(&frame[4..8], b"FWK1");
/// ```
#[derive(Debug, Clone, Default)]
pub struct FrameFields<'a> {
    /// Raw opcode value.
    pub opcode: u16,
    /// Transaction id.
    pub transaction_id: Option<Uuid>,
    /// Ask for an `Ack`.
    pub requires_ack: bool,
    /// Channel.
    pub channel: Option<&'a str>,
    /// Receiver session id.
    pub receiver_id: Option<Uuid>,
    /// Emitter session id.
    pub emitter_id: Option<Uuid>,
    /// Payload bytes.
    pub payload: Option<&'a [u8]>,
    /// JWT.
    pub token: Option<&'a str>,
    /// Trace id.
    pub trace_id: Option<Uuid>,
    /// Span id.
    pub span_id: u64,
    /// Parent span id.
    pub parent_span_id: u64,
    /// Error code.
    pub error_code: ErrorCode,
    /// Error message.
    pub error_message: Option<&'a str>,
    /// Node id.
    pub node_id: Option<Uuid>,
    /// Retry hint for `RateLimited`.
    pub retry_after_ms: u32,
    /// v1.1: a publication's position (or the last one seen).
    pub offset: u64,
    /// v1.1: the identity of a channel's history.
    pub epoch: Option<&'a str>,
    /// v1.1: replay what was missed (on `Subscribe`).
    pub recover: bool,
    /// v1.1: everything missed was replayed (on a recovering `Subscribe`'s Ack).
    pub recovered: bool,
    /// v1.1: the most publications to return (`History`).
    pub limit: u32,
    /// v1.1: the authenticated user.
    pub user_id: Option<&'a str>,
    /// v1.1: when the connection's token expires (Unix ms; 0: never).
    pub expires_at_ms: u64,
}

impl<'a> FrameFields<'a> {
    /// A frame with only the opcode set.
    pub fn new(opcode: u16) -> Self {
        Self {
            opcode,
            ..Self::default()
        }
    }

    /// An `Error` frame with `code` and a human-readable message.
    pub fn error_frame(code: ErrorCode, message: &'a str) -> Self {
        Self::new(Opcode::Error.0).error(code, message)
    }

    /// Sets the transaction id.
    pub fn transaction_id(mut self, id: Option<Uuid>) -> Self {
        self.transaction_id = id;
        self
    }
    /// Sets `requires_ack`.
    pub fn requires_ack(mut self, yes: bool) -> Self {
        self.requires_ack = yes;
        self
    }
    /// Sets the channel.
    pub fn channel(mut self, channel: &'a str) -> Self {
        self.channel = Some(channel);
        self
    }
    /// Sets the receiver id.
    pub fn receiver_id(mut self, id: Option<Uuid>) -> Self {
        self.receiver_id = id;
        self
    }
    /// Sets the emitter id.
    pub fn emitter_id(mut self, id: Option<Uuid>) -> Self {
        self.emitter_id = id;
        self
    }
    /// Sets the payload.
    pub fn payload(mut self, payload: &'a [u8]) -> Self {
        self.payload = Some(payload);
        self
    }
    /// Sets the token.
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    /// Sets the trace id.
    pub fn trace_id(mut self, id: Option<Uuid>) -> Self {
        self.trace_id = id;
        self
    }
    /// Sets the span id.
    pub fn span_id(mut self, id: u64) -> Self {
        self.span_id = id;
        self
    }
    /// Sets the parent span id.
    pub fn parent_span_id(mut self, id: u64) -> Self {
        self.parent_span_id = id;
        self
    }
    /// Sets the error code and message.
    pub fn error(mut self, code: ErrorCode, message: &'a str) -> Self {
        self.error_code = code;
        self.error_message = Some(message);
        self
    }
    /// Sets the node id.
    pub fn node_id(mut self, id: Option<Uuid>) -> Self {
        self.node_id = id;
        self
    }
    /// Sets `retry_after_ms`.
    pub fn retry_after_ms(mut self, ms: u32) -> Self {
        self.retry_after_ms = ms;
        self
    }
    /// Sets the v1.1 `offset`.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }
    /// Sets the v1.1 `epoch`.
    pub fn epoch(mut self, epoch: &'a str) -> Self {
        self.epoch = Some(epoch);
        self
    }
    /// Sets the v1.1 `recover`.
    pub fn recover(mut self, yes: bool) -> Self {
        self.recover = yes;
        self
    }
    /// Sets the v1.1 `recovered`.
    pub fn recovered(mut self, yes: bool) -> Self {
        self.recovered = yes;
        self
    }
    /// Sets the v1.1 `limit`.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
    /// Sets the v1.1 `user_id`.
    pub fn user_id(mut self, user_id: &'a str) -> Self {
        self.user_id = Some(user_id);
        self
    }
    /// Sets the v1.1 `expires_at_ms`.
    pub fn expires_at_ms(mut self, ms: u64) -> Self {
        self.expires_at_ms = ms;
        self
    }

    /// Builds the `Message` table into `fbb` without finishing it, so callers can
    /// finish it themselves or embed it.
    pub fn build<'b>(
        &self,
        fbb: &mut FlatBufferBuilder<'b>,
    ) -> flatbuffers::WIPOffset<fbs::Message<'b>> {
        let channel = self.channel.map(|c| fbb.create_string(c));
        let payload = self.payload.map(|p| fbb.create_vector(p));
        let token = self.token.map(|t| fbb.create_string(t));
        let error_message = self.error_message.map(|m| fbb.create_string(m));
        let epoch = self.epoch.map(|e| fbb.create_string(e));
        let user_id = self.user_id.map(|u| fbb.create_string(u));
        let tx = self.transaction_id.as_ref().map(to_fbs_uuid);
        let receiver = self.receiver_id.as_ref().map(to_fbs_uuid);
        let emitter = self.emitter_id.as_ref().map(to_fbs_uuid);
        let trace = self.trace_id.as_ref().map(to_fbs_uuid);
        let node = self.node_id.as_ref().map(to_fbs_uuid);
        fbs::Message::create(
            fbb,
            &fbs::MessageArgs {
                opcode: Opcode(self.opcode),
                transaction_id: tx.as_ref(),
                requires_ack: self.requires_ack,
                channel,
                receiver_id: receiver.as_ref(),
                emitter_id: emitter.as_ref(),
                payload,
                token,
                trace_id: trace.as_ref(),
                span_id: self.span_id,
                parent_span_id: self.parent_span_id,
                error_code: self.error_code,
                error_message,
                node_id: node.as_ref(),
                retry_after_ms: self.retry_after_ms,
                offset: self.offset,
                epoch,
                recover: self.recover,
                recovered: self.recovered,
                limit: self.limit,
                user_id,
                expires_at_ms: self.expires_at_ms,
            },
        )
    }

    /// Encodes into `fbb` (which is reset first and after) and returns the finished bytes.
    pub fn encode_with(&self, fbb: &mut FlatBufferBuilder<'_>) -> Bytes {
        fbb.reset();
        let root = self.build(fbb);
        finish(fbb, root)
    }

    /// Encodes with a per-thread reusable builder.
    pub fn encode(&self) -> Bytes {
        BUILDER.with(|b| match b.try_borrow_mut() {
            Ok(mut fbb) => self.encode_with(&mut fbb),
            // Re-entrant use on the same thread (never in the framework itself).
            Err(_) => self.encode_with(&mut FlatBufferBuilder::new()),
        })
    }
}

/// Finishes `root` with the `FWK1` identifier, copies the bytes out and resets `fbb`
/// so the builder's allocation is reused for the next frame.
pub(crate) fn finish(
    fbb: &mut FlatBufferBuilder<'_>,
    root: flatbuffers::WIPOffset<fbs::Message<'_>>,
) -> Bytes {
    fbb.finish(root, Some(FILE_IDENTIFIER));
    let out = Bytes::copy_from_slice(fbb.finished_data());
    fbb.reset();
    out
}
