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

/// A reply's frame, written directly: `opcode`, the request's transaction and
/// trace ids, its span id and `payload`, the fields every reply of a handler
/// has (`Error` frames, and frames with other fields, go through
/// [`FrameFields`]).
///
/// The layout is fixed, so nothing is searched or grown: the root offset and
/// `FWK1`, the vtable (slots 0 to 9: opcode to span id), the table (opcode,
/// span id, the payload's offset, the ids present), then the payload vector.
/// Opcode and span id are always written (a reader sees their defaults
/// either way); the ids and the payload only when present. It decodes exactly
/// as the builder's encoding of the same fields (see the tests), at a seventh
/// of the instructions: the builder's `Message::create` searches its vtables
/// and pushes 22 slots, copies the payload in and the frame out (~1,170
/// instructions of ~8,000 per rpc message in callgrind).
pub(crate) fn reply_frame(
    opcode: u16,
    transaction_id: Option<&Uuid>,
    trace_id: Option<&Uuid>,
    span_id: u64,
    payload: Option<&[u8]>,
) -> Bytes {
    let payload = payload.map(|p| (p.len(), |out: &mut Vec<u8>| out.extend_from_slice(p)));
    reply_frame_with(opcode, transaction_id, trace_id, span_id, payload)
}

/// [`reply_frame`] whose payload, of the given length, `write` appends to the
/// frame (a typed reply's table is written there, without a copy of its own).
pub(crate) fn reply_frame_with(
    opcode: u16,
    transaction_id: Option<&Uuid>,
    trace_id: Option<&Uuid>,
    span_id: u64,
    payload: Option<(usize, impl FnOnce(&mut Vec<u8>))>,
) -> Bytes {
    /// The vtable follows the root offset and the file identifier.
    const VTABLE: usize = 8;
    /// Fields 0 (opcode) to 9 (span_id).
    const SLOTS: usize = 10;
    const VTABLE_LEN: usize = 4 + 2 * SLOTS;
    const TABLE: usize = VTABLE + VTABLE_LEN;
    // The table's fields, each at its alignment from the buffer's start
    // (TABLE is a multiple of 8): the soffset, the opcode (u16, padded to 4),
    // the span id (u64 at TABLE + 8), then 4-byte and 1-byte aligned fields.
    const OPCODE: usize = TABLE + 4;
    const SPAN: usize = TABLE + 8;
    let mut end = SPAN + 8;
    let mut place = |present: bool, len: usize| {
        present.then(|| {
            end += len;
            end - len
        })
    };
    let payload_at = place(payload.is_some(), 4);
    let tx_at = place(transaction_id.is_some(), 16);
    let trace_at = place(trace_id.is_some(), 16);
    // Every field's size is a multiple of 4: the vector's length is aligned.
    let vector = end;
    let len = vector + payload.as_ref().map_or(0, |(n, _)| 4 + n);
    let slot = |at: Option<usize>| at.map_or(0, |a| (a - TABLE) as u16);

    // Everything before the payload's bytes, at fixed places on the stack:
    // one copy into the frame.
    let mut head = [0u8; SPAN + 8 + 4 + 16 + 16 + 4];
    let mut put = |at: usize, bytes: &[u8]| head[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &(TABLE as u32).to_le_bytes());
    put(4, super::FILE_IDENTIFIER.as_bytes());
    let vtable: [u16; 2 + SLOTS] = [
        VTABLE_LEN as u16,
        (vector - TABLE) as u16,
        slot(Some(OPCODE)),
        slot(tx_at),
        0, // requires_ack
        0, // channel
        0, // receiver_id
        0, // emitter_id
        slot(payload_at),
        0, // token
        slot(trace_at),
        slot(Some(SPAN)),
    ];
    for (i, v) in vtable.into_iter().enumerate() {
        put(VTABLE + 2 * i, &v.to_le_bytes());
    }
    put(TABLE, &((TABLE - VTABLE) as i32).to_le_bytes());
    put(OPCODE, &opcode.to_le_bytes());
    put(SPAN, &span_id.to_le_bytes());
    if let Some(at) = payload_at {
        put(at, &((vector - at) as u32).to_le_bytes());
    }
    if let (Some(at), Some(id)) = (tx_at, transaction_id) {
        put(at, id.as_bytes());
    }
    if let (Some(at), Some(id)) = (trace_at, trace_id) {
        put(at, id.as_bytes());
    }
    let mut head_len = vector;
    if let Some((n, _)) = &payload {
        put(vector, &(*n as u32).to_le_bytes());
        head_len += 4;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&head[..head_len]);
    if let Some((_, write)) = payload {
        write(&mut out);
    }
    debug_assert_eq!(out.len(), len);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DecodeLimits, Frame};
    use proptest::prelude::*;

    fn decoded(bytes: Bytes) -> Frame {
        Frame::decode(bytes, &DecodeLimits::default()).expect("a valid frame")
    }

    proptest! {
        /// A reply written directly decodes as the builder's encoding of the
        /// same fields, field by field, and passes the frame's verification.
        #[test]
        fn a_reply_frame_decodes_as_the_builders(
            opcode in any::<u16>(),
            tx in proptest::option::of(any::<u128>()),
            trace in proptest::option::of(any::<u128>()),
            span in any::<u64>(),
            payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..600)),
        ) {
            let (tx, trace) = (tx.map(Uuid::from_u128), trace.map(Uuid::from_u128));
            let direct = decoded(reply_frame(
                opcode,
                tx.as_ref(),
                trace.as_ref(),
                span,
                payload.as_deref(),
            ));
            let mut fields = FrameFields::new(opcode)
                .transaction_id(tx)
                .trace_id(trace)
                .span_id(span);
            if let Some(p) = &payload {
                fields = fields.payload(p);
            }
            let built = decoded(fields.encode());
            let (d, b) = (direct.message(), built.message());
            prop_assert_eq!(direct.opcode(), built.opcode());
            prop_assert_eq!(direct.transaction_id(), built.transaction_id());
            prop_assert_eq!(direct.trace_id(), built.trace_id());
            prop_assert_eq!(direct.span_id(), built.span_id());
            prop_assert_eq!(d.payload().map(|p| p.bytes()), b.payload().map(|p| p.bytes()));
            prop_assert_eq!(direct.payload(), built.payload());
            prop_assert_eq!(d.requires_ack(), b.requires_ack());
            prop_assert_eq!(d.channel(), b.channel());
            prop_assert_eq!(d.receiver_id().is_some(), b.receiver_id().is_some());
            prop_assert_eq!(d.emitter_id().is_some(), b.emitter_id().is_some());
            prop_assert_eq!(d.token(), b.token());
            prop_assert_eq!(d.parent_span_id(), b.parent_span_id());
            prop_assert_eq!(d.error_code(), b.error_code());
            prop_assert_eq!(d.error_message(), b.error_message());
            prop_assert_eq!(d.node_id().is_some(), b.node_id().is_some());
            prop_assert_eq!(d.retry_after_ms(), b.retry_after_ms());
            prop_assert_eq!(d.offset(), b.offset());
            prop_assert_eq!(d.epoch(), b.epoch());
            prop_assert_eq!(d.limit(), b.limit());
            prop_assert_eq!(d.user_id(), b.user_id());
            prop_assert_eq!(d.expires_at_ms(), b.expires_at_ms());
        }
    }

    /// flatbuffers' own verifier takes the frame, with the `FWK1` identifier,
    /// with and without a payload.
    #[test]
    fn a_reply_frame_passes_the_flatbuffers_verifier_with_its_identifier() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        for payload in [
            None,
            Some(&b""[..]),
            Some(&b"abc"[..]),
            Some(&[7u8; 301][..]),
        ] {
            let frame = reply_frame(200, Some(&id), Some(&id), 42, payload);
            assert!(fbs::message_buffer_has_identifier(&frame));
            let message = flatbuffers::root::<fbs::Message<'_>>(&frame).expect("verifies");
            assert_eq!(message.opcode(), Opcode(200));
            assert_eq!(message.span_id(), 42);
            assert_eq!(message.payload().map(|p| p.bytes()), payload);
        }
    }
}
