use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use uuid::Uuid;

use super::{fbs, to_fbs_uuid, ErrorCode, Opcode, FILE_IDENTIFIER};

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

    /// Encodes the frame: a finished `Message` buffer with the `FWK1`
    /// identifier, the same fields as [`encode_with`](Self::encode_with)
    /// gives, written straight into one buffer of its exact size (no builder:
    /// every reply is encoded here, and the generated builder's 22 slots,
    /// vtable search and copy out were a tenth of a request's instructions).
    pub fn encode(&self) -> Bytes {
        Bytes::from(write_message(self))
    }
}

/// The vtable slot (its offset in the vtable) of a `Message` field.
type Slot = flatbuffers::VOffsetT;

/// `Message`'s fields, grouped as [`write_message`] lays them out in the table:
/// 8-byte scalars first (the table starts 4 bytes before an 8-byte boundary,
/// after its 4-byte vtable offset), then the 16-byte `Uuid` structs (alignment 1),
/// then 4-byte values (references to strings and vectors, and scalars), then
/// 2-byte, then booleans. A field equal to its default is left out, as the
/// generated builder does.
struct Groups<'f> {
    wide: [(Slot, u64); 4],
    uuids: [(Slot, Option<&'f Uuid>); 5],
    /// (slot, bytes, is a string: NUL-terminated).
    refs: [(Slot, Option<&'f [u8]>, bool); 6],
    words: [(Slot, u32); 2],
    shorts: [(Slot, u16); 2],
    flags: [(Slot, bool); 3],
}

impl<'f> Groups<'f> {
    fn of(f: &'f FrameFields<'_>) -> Self {
        use fbs::Message as M;
        Groups {
            wide: [
                (M::VT_SPAN_ID, f.span_id),
                (M::VT_PARENT_SPAN_ID, f.parent_span_id),
                (M::VT_OFFSET, f.offset),
                (M::VT_EXPIRES_AT_MS, f.expires_at_ms),
            ],
            uuids: [
                (M::VT_TRANSACTION_ID, f.transaction_id.as_ref()),
                (M::VT_RECEIVER_ID, f.receiver_id.as_ref()),
                (M::VT_EMITTER_ID, f.emitter_id.as_ref()),
                (M::VT_TRACE_ID, f.trace_id.as_ref()),
                (M::VT_NODE_ID, f.node_id.as_ref()),
            ],
            refs: [
                (M::VT_CHANNEL, f.channel.map(str::as_bytes), true),
                (M::VT_PAYLOAD, f.payload, false),
                (M::VT_TOKEN, f.token.map(str::as_bytes), true),
                (
                    M::VT_ERROR_MESSAGE,
                    f.error_message.map(str::as_bytes),
                    true,
                ),
                (M::VT_EPOCH, f.epoch.map(str::as_bytes), true),
                (M::VT_USER_ID, f.user_id.map(str::as_bytes), true),
            ],
            words: [
                (M::VT_RETRY_AFTER_MS, f.retry_after_ms),
                (M::VT_LIMIT, f.limit),
            ],
            shorts: [(M::VT_OPCODE, f.opcode), (M::VT_ERROR_CODE, f.error_code.0)],
            flags: [
                (M::VT_REQUIRES_ACK, f.requires_ack),
                (M::VT_RECOVER, f.recover),
                (M::VT_RECOVERED, f.recovered),
            ],
        }
    }
}

/// The number of `Message` fields [`Groups`] knows (a test holds it to the
/// schema's).
const MESSAGE_FIELDS: usize = 22;

/// Where each present field goes: its offset in the table, by vtable slot.
struct Layout {
    /// Field offsets from the table's start, indexed by field id (0: absent).
    fields: [u16; MESSAGE_FIELDS],
    /// One past the highest present field id.
    vtable_fields: usize,
    /// The table's length, its 4-byte vtable offset included.
    table_len: usize,
}

fn field_index(slot: Slot) -> usize {
    usize::from(slot - 4) / 2
}

impl Layout {
    fn of(g: &Groups<'_>) -> Self {
        let mut layout = Layout {
            fields: [0; MESSAGE_FIELDS],
            vtable_fields: 0,
            table_len: 4,
        };
        let mut place = |slot: Slot, size: usize| {
            let i = field_index(slot);
            layout.fields[i] = u16::try_from(layout.table_len).expect("a table under 64 KiB");
            layout.vtable_fields = layout.vtable_fields.max(i + 1);
            layout.table_len += size;
        };
        g.wide
            .iter()
            .filter(|f| f.1 != 0)
            .for_each(|f| place(f.0, 8));
        g.uuids
            .iter()
            .filter(|f| f.1.is_some())
            .for_each(|f| place(f.0, 16));
        g.refs
            .iter()
            .filter(|f| f.1.is_some())
            .for_each(|f| place(f.0, 4));
        g.words
            .iter()
            .filter(|f| f.1 != 0)
            .for_each(|f| place(f.0, 4));
        g.shorts
            .iter()
            .filter(|f| f.1 != 0)
            .for_each(|f| place(f.0, 2));
        g.flags.iter().filter(|f| f.1).for_each(|f| place(f.0, 1));
        layout
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The finished `Message` buffer of `f`, laid out front to back: the root
/// offset and the `FWK1` identifier, the vtable, the table (at 4 mod 8, so its
/// 8-byte fields are aligned), then the strings and vectors it refers to in
/// field order, each 4-aligned. Every offset points forward, as FlatBuffers
/// requires; padding is zero. The `Vec` is exactly as long as its capacity, so
/// it becomes `Bytes` without another allocation.
fn write_message(f: &FrameFields<'_>) -> Vec<u8> {
    let g = Groups::of(f);
    let layout = Layout::of(&g);
    let vtable = 8;
    let vtable_len = 4 + 2 * layout.vtable_fields;
    let mut table = vtable + vtable_len;
    table += (12 - table % 8) % 8; // to 4 mod 8
    let objects = align4(table + layout.table_len);
    let mut total = objects;
    for (_, bytes, string) in &g.refs {
        if let Some(bytes) = bytes {
            total += align4(4 + bytes.len() + usize::from(*string));
        }
    }
    let offset32 = |n: usize| u32::try_from(n).expect("a frame under 4 GiB");

    let mut out = vec![0u8; total];
    let put = |out: &mut [u8], at: usize, bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut out, 0, &offset32(table).to_le_bytes());
    put(&mut out, 4, FILE_IDENTIFIER.as_bytes());
    let vtable_len16 = u16::try_from(vtable_len).expect("22 fields at most");
    put(&mut out, vtable, &vtable_len16.to_le_bytes());
    let table_len16 = u16::try_from(layout.table_len).expect("a table under 64 KiB");
    put(&mut out, vtable + 2, &table_len16.to_le_bytes());
    for (i, at) in layout.fields[..layout.vtable_fields].iter().enumerate() {
        put(&mut out, vtable + 4 + 2 * i, &at.to_le_bytes());
    }
    // The vtable is `table - soffset`: before the table, so the offset is positive.
    let soffset = i32::try_from(table - vtable).expect("a small vtable");
    put(&mut out, table, &soffset.to_le_bytes());
    let field = |slot: Slot| table + usize::from(layout.fields[field_index(slot)]);
    for (slot, v) in g.wide.iter().filter(|f| f.1 != 0) {
        put(&mut out, field(*slot), &v.to_le_bytes());
    }
    for (slot, id) in &g.uuids {
        if let Some(id) = id {
            put(&mut out, field(*slot), id.as_bytes());
        }
    }
    let mut object = objects;
    for (slot, bytes, string) in &g.refs {
        if let Some(bytes) = bytes {
            let at = field(*slot);
            put(&mut out, at, &offset32(object - at).to_le_bytes());
            put(&mut out, object, &offset32(bytes.len()).to_le_bytes());
            put(&mut out, object + 4, bytes);
            // A string's NUL and the padding are the buffer's zeroes.
            object += align4(4 + bytes.len() + usize::from(*string));
        }
    }
    for (slot, v) in g.words.iter().filter(|f| f.1 != 0) {
        put(&mut out, field(*slot), &v.to_le_bytes());
    }
    for (slot, v) in g.shorts.iter().filter(|f| f.1 != 0) {
        put(&mut out, field(*slot), &v.to_le_bytes());
    }
    for (slot, _) in g.flags.iter().filter(|f| f.1) {
        out[field(*slot)] = 1;
    }
    debug_assert_eq!(object, total);
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_writer_lays_out_every_field_of_the_schema_once() {
        let f = FrameFields::default();
        let g = Groups::of(&f);
        let mut slots: Vec<Slot> = g.wide.iter().map(|f| f.0).collect();
        slots.extend(g.uuids.iter().map(|f| f.0));
        slots.extend(g.refs.iter().map(|f| f.0));
        slots.extend(g.words.iter().map(|f| f.0));
        slots.extend(g.shorts.iter().map(|f| f.0));
        slots.extend(g.flags.iter().map(|f| f.0));
        slots.sort_unstable();
        let expected: Vec<Slot> = (0..MESSAGE_FIELDS as Slot).map(|i| 4 + 2 * i).collect();
        assert_eq!(slots, expected);
        let schema = include_str!("../../../schemas/protocol.fbs");
        let fields = schema
            .split("table Message {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("table Message in the schema")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        assert_eq!(
            fields, MESSAGE_FIELDS,
            "a field was added to Message: write it in `Groups`"
        );
    }

    /// Every field of `m`, to compare two encodings field by field.
    fn fields_of(m: &fbs::Message<'_>) -> String {
        format!(
            "{:?} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {} {} {:?} {:?} {:?} {} {} {:?} {} {} {} {:?} {}",
            m.opcode(),
            m.transaction_id().map(crate::protocol::from_fbs_uuid),
            m.requires_ack(),
            m.channel(),
            m.receiver_id().map(crate::protocol::from_fbs_uuid),
            m.emitter_id().map(crate::protocol::from_fbs_uuid),
            m.payload().map(|p| p.bytes().to_vec()),
            m.token(),
            m.trace_id().map(crate::protocol::from_fbs_uuid),
            m.span_id(),
            m.parent_span_id(),
            m.error_code(),
            m.error_message(),
            m.node_id().map(crate::protocol::from_fbs_uuid),
            m.retry_after_ms(),
            m.offset(),
            m.epoch(),
            m.recover(),
            m.recovered(),
            m.limit(),
            m.user_id(),
            m.expires_at_ms(),
        )
    }

    /// Checks that the written frame passes the generated verifier and the
    /// framework's decoder, and holds the same fields as the builder's encoding.
    fn check(f: &FrameFields<'_>) -> Result<(), TestCaseError> {
        let written = f.encode();
        prop_assert!(flatbuffers::buffer_has_identifier(
            &written,
            FILE_IDENTIFIER,
            false
        ));
        let ours = flatbuffers::root::<fbs::Message<'_>>(&written)
            .map_err(|e| TestCaseError::fail(format!("{e}: {written:?}")))?;
        let built = f.encode_with(&mut FlatBufferBuilder::new());
        let theirs = flatbuffers::root::<fbs::Message<'_>>(&built).expect("the builder's frame");
        prop_assert_eq!(fields_of(&ours), fields_of(&theirs));
        let limits = crate::protocol::DecodeLimits::default();
        crate::protocol::Frame::decode(written, &limits)
            .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
        Ok(())
    }

    #[test]
    fn the_written_frame_holds_what_the_builder_would_write() {
        check(&FrameFields::default()).unwrap();
        check(&FrameFields::new(Opcode::Ping.0)).unwrap();
        check(&FrameFields::new(Opcode::Ack.0).span_id(1)).unwrap();
        check(&FrameFields::new(Opcode::Publish.0).payload(b"")).unwrap();
        check(&FrameFields::new(Opcode::Publish.0).channel("")).unwrap();
        check(&FrameFields::new(Opcode::Publish.0).payload(&[9; 70_000])).unwrap();
    }

    fn uuid() -> impl Strategy<Value = Option<Uuid>> {
        proptest::option::of(any::<u128>().prop_map(Uuid::from_u128))
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zé]{0,9}")
    }

    fn wide() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0u64), any::<u64>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_frame_is_written_as_the_builder_would_write_it(
            ids in (uuid(), uuid(), uuid(), uuid(), uuid()),
            strings in (text(), text(), text(), text(), text()),
            payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            wides in (wide(), wide(), wide(), wide()),
            small in (prop_oneof![Just(0u16), any::<u16>()], 0u16..12, prop_oneof![Just(0u32), any::<u32>()], prop_oneof![Just(0u32), any::<u32>()]),
            flags in (any::<bool>(), any::<bool>(), any::<bool>()),
        ) {
            let f = FrameFields {
                opcode: small.0,
                transaction_id: ids.0,
                requires_ack: flags.0,
                channel: strings.0.as_deref(),
                receiver_id: ids.1,
                emitter_id: ids.2,
                payload: payload.as_deref(),
                token: strings.1.as_deref(),
                trace_id: ids.3,
                span_id: wides.0,
                parent_span_id: wides.1,
                error_code: ErrorCode(small.1),
                error_message: strings.2.as_deref(),
                node_id: ids.4,
                retry_after_ms: small.2,
                offset: wides.2,
                epoch: strings.3.as_deref(),
                recover: flags.1,
                recovered: flags.2,
                limit: small.3,
                user_id: strings.4.as_deref(),
                expires_at_ms: wides.3,
            };
            check(&f)?;
        }
    }
}
