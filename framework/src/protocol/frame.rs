use bytes::Bytes;
use flatbuffers::VerifierOptions;
use uuid::Uuid;

use super::{fbs, from_fbs_uuid, ErrorCode, Opcode, FILE_IDENTIFIER};

/// Limits applied when verifying an untrusted frame, tighter than flatbuffers'
/// defaults: a protocol `Message` is one table with no nesting.
///
/// ```
/// let limits = framework::protocol::DecodeLimits::for_max_size(64 * 1024);
/// assert_eq!(limits.max_size, 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted frame in bytes. Twice it bounds the verifier's apparent
    /// size (the bytes its checks cover, which count a part the frame's fields
    /// share once for each).
    pub max_size: usize,
    /// Maximum table nesting depth.
    pub max_depth: usize,
    /// Maximum number of tables.
    pub max_tables: usize,
}

impl DecodeLimits {
    /// Limits for frames of at most `max_size` bytes.
    pub const fn for_max_size(max_size: usize) -> Self {
        Self {
            max_size,
            max_depth: 8,
            max_tables: 16,
        }
    }

    /// The flatbuffers verifier options a frame is checked under (what
    /// [`Frame::decode`] accepts is what `flatbuffers::root_with_opts` accepts
    /// with these, after the size and identifier checks).
    ///
    /// ```
    /// let opts = framework::protocol::DecodeLimits::for_max_size(1024).verifier_options();
    /// assert_eq!(opts.max_apparent_size, 2048);
    /// ```
    pub fn verifier_options(&self) -> VerifierOptions {
        VerifierOptions {
            max_depth: self.max_depth,
            max_tables: self.max_tables,
            // The length is checked separately; vtables count again per table.
            max_apparent_size: self.max_size.saturating_mul(2),
            ignore_missing_null_terminator: false,
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::for_max_size(crate::config::DEFAULT_MAX_MESSAGE_SIZE)
    }
}

/// Why bytes are not a protocol frame. Every variant is answered with
/// `Error`/`BadFrame` (or `TooLarge`) by the server.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// No bytes at all.
    #[error("empty frame")]
    Empty,
    /// Larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The buffer does not carry the `FWK1` file identifier.
    #[error("missing FWK1 file identifier")]
    MissingIdentifier,
    /// The FlatBuffers verifier rejected the buffer.
    #[error("not a valid protocol Message: {0}")]
    Invalid(String),
}

impl FrameError {
    /// The protocol error code this failure is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}

/// A verified protocol frame: the received bytes plus the guarantee that they hold a
/// valid `Message` with the `FWK1` identifier. Cloning is cheap (refcounted bytes).
///
/// ```
/// use framework::protocol::{DecodeLimits, Frame, FrameFields, Opcode};
/// let bytes = FrameFields::new(Opcode::Subscribe.0).channel("news").encode();
/// let frame = Frame::decode(bytes, &DecodeLimits::default()).unwrap();
/// assert_eq!(frame.opcode(), Opcode::Subscribe.0);
/// assert_eq!(frame.channel(), Some("news"));
/// ```
#[derive(Clone)]
pub struct Frame {
    bytes: Bytes,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.message().fmt(f)
    }
}

impl Frame {
    /// Verifies untrusted bytes. Never panics, whatever the input.
    pub fn decode(bytes: Bytes, limits: &DecodeLimits) -> Result<Frame, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::Empty);
        }
        if bytes.len() > limits.max_size {
            return Err(FrameError::TooLarge {
                size: bytes.len(),
                limit: limits.max_size,
            });
        }
        // root offset (4) + identifier (4); buffer_has_identifier asserts on shorter input.
        if bytes.len() < 8 || !flatbuffers::buffer_has_identifier(&bytes, FILE_IDENTIFIER, false) {
            return Err(FrameError::MissingIdentifier);
        }
        let opts = limits.verifier_options();
        if !message_is_sound(&opts, &bytes) {
            // Refused (or beyond what the plain check knows): the verifier
            // decides, and names what failed.
            verify_message(&opts, &bytes).map_err(|(field, e)| {
                FrameError::Invalid(match field {
                    Some(field) => format!("{e}, while verifying field `{field}`"),
                    None => e.to_string(),
                })
            })?;
        }
        Ok(Frame { bytes })
    }

    /// The parsed message (zero-copy view over the frame's bytes).
    pub fn message(&self) -> fbs::Message<'_> {
        // SAFETY: `bytes` is immutable and passed `decode`, the only
        // constructor, whose checks accept what `root_with_opts::<Message>`
        // accepts and nothing else (the tests hold both to its verdict), so it
        // is a valid `Message` buffer.
        #[allow(unsafe_code)]
        unsafe {
            flatbuffers::root_unchecked::<fbs::Message<'_>>(&self.bytes)
        }
    }

    /// The envelope fields that handling every request reads, with one look
    /// at the vtable (each generated accessor looks it up again: a request's
    /// handling read it ten times, ~25 instructions each, and each accessor
    /// inlined is code of its own in the hot path). Reads are bounds-checked;
    /// on a decoded frame none falls outside it.
    pub(crate) fn head(&self) -> Head {
        type M<'a> = fbs::Message<'a>;
        let buf: &[u8] = &self.bytes;
        let get = |pos: usize, n: usize| buf.get(pos..pos.checked_add(n)?);
        let u32_at = |pos: usize| get(pos, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let Some(table) = u32_at(0).map(|t| t as usize) else {
            return Head::default();
        };
        let Some((vtable, len)) = vtable_of(buf, table) else {
            return Head::default();
        };
        // Where a field is, when the vtable has its slot and it is set.
        let place = |slot: flatbuffers::VOffsetT| -> Option<usize> {
            let entry =
                get(vtable + usize::from(slot), 2).filter(|_| usize::from(slot) + 2 <= len)?;
            let offset = usize::from(u16::from_le_bytes([entry[0], entry[1]]));
            (offset != 0).then(|| table + offset)
        };
        let field = |slot, n| get(place(slot)?, n);
        let uuid = |slot| field(slot, 16).and_then(|b| Uuid::from_slice(b).ok());
        let payload = place(M::VT_PAYLOAD).and_then(|at| {
            let start = at.checked_add(u32_at(at)? as usize)?;
            let len = u32_at(start)? as usize;
            get(start + 4, len)?;
            Some(start + 4..start + 4 + len)
        });
        Head {
            opcode: field(M::VT_OPCODE, 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]])),
            transaction_id: uuid(M::VT_TRANSACTION_ID),
            requires_ack: field(M::VT_REQUIRES_ACK, 1).is_some_and(|b| b[0] != 0),
            trace_id: uuid(M::VT_TRACE_ID),
            span_id: field(M::VT_SPAN_ID, 8).map_or(0, |b| {
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }),
            payload,
        }
    }

    /// The payload's bytes by their place in the frame (from [`head`](Self::head)).
    pub(crate) fn payload_at(&self, at: &Option<std::ops::Range<usize>>) -> Bytes {
        match at {
            Some(r) => self.bytes.slice(r.clone()),
            None => Bytes::new(),
        }
    }

    /// The frame's encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The raw opcode value (a value not named in [`Opcode`] is legal).
    pub fn opcode(&self) -> u16 {
        self.message().opcode().0
    }

    /// The opcode as the generated enum type.
    pub fn opcode_enum(&self) -> Opcode {
        self.message().opcode()
    }

    /// The transaction id, if the sender set one.
    pub fn transaction_id(&self) -> Option<Uuid> {
        self.message().transaction_id().map(from_fbs_uuid)
    }

    /// Whether the sender asked for an `Ack`.
    pub fn requires_ack(&self) -> bool {
        self.message().requires_ack()
    }

    /// The channel field.
    pub fn channel(&self) -> Option<&str> {
        self.message().channel()
    }

    /// The receiver id (`Send` target; in `Welcome`, the session's own id).
    pub fn receiver_id(&self) -> Option<Uuid> {
        self.message().receiver_id().map(from_fbs_uuid)
    }

    /// The emitter id (set by the server on deliveries).
    pub fn emitter_id(&self) -> Option<Uuid> {
        self.message().emitter_id().map(from_fbs_uuid)
    }

    /// The payload as a zero-copy slice of the frame (empty when absent).
    pub fn payload(&self) -> Bytes {
        match self.message().payload() {
            Some(v) => self.bytes.slice_ref(v.bytes()),
            None => Bytes::new(),
        }
    }

    /// Whether the payload field is present.
    pub fn has_payload(&self) -> bool {
        self.message().payload().is_some()
    }

    /// The JWT carried by this frame.
    pub fn token(&self) -> Option<&str> {
        self.message().token()
    }

    /// The trace id.
    pub fn trace_id(&self) -> Option<Uuid> {
        self.message().trace_id().map(from_fbs_uuid)
    }

    /// The span id.
    pub fn span_id(&self) -> u64 {
        self.message().span_id()
    }

    /// The parent span id.
    pub fn parent_span_id(&self) -> u64 {
        self.message().parent_span_id()
    }

    /// The error code (on `Error` frames).
    pub fn error_code(&self) -> ErrorCode {
        self.message().error_code()
    }

    /// The error message (on `Error` frames).
    pub fn error_message(&self) -> Option<&str> {
        self.message().error_message()
    }

    /// The node id (on `Welcome`).
    pub fn node_id(&self) -> Option<Uuid> {
        self.message().node_id().map(from_fbs_uuid)
    }

    /// `retry_after_ms` (on `RateLimited` errors).
    pub fn retry_after_ms(&self) -> u32 {
        self.message().retry_after_ms()
    }

    /// v1.1 `offset`: a publication's position, or the last one a client saw.
    pub fn offset(&self) -> u64 {
        self.message().offset()
    }

    /// v1.1 `epoch`: the identity of a channel's history.
    pub fn epoch(&self) -> Option<&str> {
        self.message().epoch()
    }

    /// v1.1 `recover` (on `Subscribe`).
    pub fn recover(&self) -> bool {
        self.message().recover()
    }

    /// v1.1 `recovered` (on the Ack of a recovering `Subscribe`).
    pub fn recovered(&self) -> bool {
        self.message().recovered()
    }

    /// v1.1 `limit` (on `History`).
    pub fn limit(&self) -> u32 {
        self.message().limit()
    }

    /// v1.1 `user_id`: the authenticated user (`Welcome`, `Auth`'s Ack, deliveries).
    pub fn user_id(&self) -> Option<&str> {
        self.message().user_id()
    }

    /// v1.1 `expires_at_ms`: when the connection's token expires (Unix ms; 0: never).
    pub fn expires_at_ms(&self) -> u64 {
        self.message().expires_at_ms()
    }
}

/// Verifies that `buf` holds a `Message` table, as
/// `flatbuffers::root_with_opts::<Message>` does: the same checks of the table
/// and of every field the schema has, through the same `Verifier` (its bounds,
/// alignment, size and depth accounting), so the same buffers pass; a property
/// test compares the two verdicts on mutated frames. Written out because the
/// generated verifier makes 22 calls a frame, one per field whether the field
/// is there or not, each passing a table verifier and a `Result` by value:
/// ~1,800 instructions per frame (callgrind), a fifth of the server's cost of a
/// typed request. Here the vtable is walked once and only the fields present
/// are checked. `Err` names the field that failed.
fn verify_message(
    opts: &VerifierOptions,
    buf: &[u8],
) -> Result<(), (Option<&'static str>, flatbuffers::InvalidFlatbuffer)> {
    use flatbuffers::{ForwardsUOffset, InvalidFlatbuffer, Vector, Verifiable, Verifier};
    type M<'a> = fbs::Message<'a>;
    type Str = ForwardsUOffset<&'static str>;
    #[inline(always)]
    fn run<T: Verifiable>(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer> {
        T::run_verifier(v, pos)
    }
    let table_err = |e| (None, e);
    let mut v = Verifier::new(opts, buf);
    // The root offset, then the table it points to (`ForwardsUOffset`).
    let table = v.get_uoffset(0).map_err(table_err)? as usize;
    v.visit_table(table).map_err(table_err)?;
    // `visit_table` checked both: the table's offset to its vtable, and the
    // vtable (its length even, all of it in the buffer).
    let (vtable, len) = vtable_of(buf, table).ok_or_else(|| {
        table_err(InvalidFlatbuffer::RangeOutOfBounds {
            range: table..table,
            error_trace: Default::default(),
        })
    })?;
    // Slot 4 is the first field's (the vtable's own size and the table's
    // come first); a slot past the vtable is an absent field.
    let mut slot = 4;
    while slot < len {
        let entry = vtable.saturating_add(slot);
        // What `TableVerifier::deref` reads the entry with, and counts.
        v.range_in_buffer(entry, 2).map_err(table_err)?;
        let offset = usize::from(u16::from_le_bytes([buf[entry], buf[entry + 1]]));
        let field = slot as flatbuffers::VOffsetT;
        slot += 2;
        if offset == 0 {
            continue;
        }
        let pos = table.saturating_add(offset);
        let (name, checked) = match field {
            M::VT_OPCODE => ("opcode", run::<Opcode>(&mut v, pos)),
            M::VT_TRANSACTION_ID => ("transaction_id", run::<fbs::Uuid>(&mut v, pos)),
            M::VT_REQUIRES_ACK => ("requires_ack", run::<bool>(&mut v, pos)),
            M::VT_CHANNEL => ("channel", run::<Str>(&mut v, pos)),
            M::VT_RECEIVER_ID => ("receiver_id", run::<fbs::Uuid>(&mut v, pos)),
            M::VT_EMITTER_ID => ("emitter_id", run::<fbs::Uuid>(&mut v, pos)),
            M::VT_PAYLOAD => (
                "payload",
                run::<ForwardsUOffset<Vector<'_, u8>>>(&mut v, pos),
            ),
            M::VT_TOKEN => ("token", run::<Str>(&mut v, pos)),
            M::VT_TRACE_ID => ("trace_id", run::<fbs::Uuid>(&mut v, pos)),
            M::VT_SPAN_ID => ("span_id", run::<u64>(&mut v, pos)),
            M::VT_PARENT_SPAN_ID => ("parent_span_id", run::<u64>(&mut v, pos)),
            M::VT_ERROR_CODE => ("error_code", run::<ErrorCode>(&mut v, pos)),
            M::VT_ERROR_MESSAGE => ("error_message", run::<Str>(&mut v, pos)),
            M::VT_NODE_ID => ("node_id", run::<fbs::Uuid>(&mut v, pos)),
            M::VT_RETRY_AFTER_MS => ("retry_after_ms", run::<u32>(&mut v, pos)),
            M::VT_OFFSET => ("offset", run::<u64>(&mut v, pos)),
            M::VT_EPOCH => ("epoch", run::<Str>(&mut v, pos)),
            M::VT_RECOVER => ("recover", run::<bool>(&mut v, pos)),
            M::VT_RECOVERED => ("recovered", run::<bool>(&mut v, pos)),
            M::VT_LIMIT => ("limit", run::<u32>(&mut v, pos)),
            M::VT_USER_ID => ("user_id", run::<Str>(&mut v, pos)),
            M::VT_EXPIRES_AT_MS => ("expires_at_ms", run::<u64>(&mut v, pos)),
            // A field of a later schema: never read here, so not checked
            // (nor is it by the generated verifier).
            _ => break,
        };
        checked.map_err(|e| (Some(name), e))?;
    }
    Ok(())
}

/// Whether [`verify_message`] accepts `buf`, decided with plain arithmetic on
/// the bytes: the same reads, bounds, alignments, UTF-8 and terminator checks
/// and the same apparent-size and table accounting, without the `Verifier`'s
/// error values. The tests hold it to the verifier's verdict on every frame
/// they try (truncations, every byte changed, mutations, every limit). Through
/// the `Verifier`, a request's envelope cost ~610 instructions and ~27
/// simulated L1i misses (callgrind of the rpc load), of ~6,450 and ~270: that
/// code (its generic steps and the `Result` of each) is most of what the hot
/// path's code has beyond the 32 KiB an L1i holds. `false` sends the frame to
/// `verify_message`, which names what failed.
fn message_is_sound(opts: &VerifierOptions, buf: &[u8]) -> bool {
    check_message(opts, buf).is_some_and(|apparent| apparent <= opts.max_apparent_size)
}

/// The bytes the verifier counts towards its apparent size when it accepts
/// `buf` as a `Message`, else `None`.
fn check_message(opts: &VerifierOptions, buf: &[u8]) -> Option<usize> {
    type M<'a> = fbs::Message<'a>;
    // `in_buffer::<T>`: aligned to `align` from the buffer's start, and in it.
    let at = |pos: usize, align: usize, size: usize| -> Option<&[u8]> {
        pos.is_multiple_of(align).then_some(())?;
        buf.get(pos..pos.checked_add(size)?)
    };
    let u32_at =
        |pos: usize| -> Option<u32> { Some(u32::from_le_bytes(at(pos, 4, 4)?.try_into().ok()?)) };
    // A vector of bytes (or a string) through the offset at `pos`: the bytes
    // counted (the offset, the length, the elements).
    let vector = |pos: usize, text: bool| -> Option<usize> {
        let start = (u32_at(pos)? as usize).saturating_add(pos);
        let len = u32_at(start)? as usize;
        let data = start + 4;
        let bytes = buf.get(data..data.checked_add(len)?)?;
        if text {
            std::str::from_utf8(bytes).ok()?;
            let terminated = buf.get(data + len) == Some(&0);
            (terminated || opts.ignore_missing_null_terminator).then_some(())?;
        }
        Some(8 + len)
    };
    // One table, at depth one.
    (opts.max_tables >= 1 && opts.max_depth >= 1).then_some(())?;
    let table = u32_at(0)? as usize;
    // `visit_table`'s checks beyond `vtable_of`'s: the table's offset and the
    // vtable aligned, the vtable's length even.
    let (vtable, len) = vtable_of(buf, table)?;
    (table.is_multiple_of(4) && vtable.is_multiple_of(2) && len.is_multiple_of(2)).then_some(())?;
    let entries = &buf[vtable..vtable + len];
    let mut apparent = 4 + 4 + 2 + len;
    let mut slot = 4;
    while slot < len {
        let offset = usize::from(u16::from_le_bytes([entries[slot], entries[slot + 1]]));
        let field = slot as flatbuffers::VOffsetT;
        slot += 2;
        apparent += 2;
        if offset == 0 {
            continue;
        }
        let pos = table.saturating_add(offset);
        apparent += match field {
            M::VT_OPCODE | M::VT_ERROR_CODE => at(pos, 2, 2)?.len(),
            M::VT_REQUIRES_ACK | M::VT_RECOVER | M::VT_RECOVERED => at(pos, 1, 1)?.len(),
            M::VT_TRANSACTION_ID
            | M::VT_RECEIVER_ID
            | M::VT_EMITTER_ID
            | M::VT_TRACE_ID
            | M::VT_NODE_ID => at(pos, 1, 16)?.len(),
            M::VT_SPAN_ID | M::VT_PARENT_SPAN_ID | M::VT_OFFSET | M::VT_EXPIRES_AT_MS => {
                at(pos, 8, 8)?.len()
            }
            M::VT_RETRY_AFTER_MS | M::VT_LIMIT => at(pos, 4, 4)?.len(),
            M::VT_PAYLOAD => vector(pos, false)?,
            M::VT_CHANNEL | M::VT_TOKEN | M::VT_ERROR_MESSAGE | M::VT_EPOCH | M::VT_USER_ID => {
                vector(pos, true)?
            }
            // A field of a later schema, as `verify_message`.
            _ => break,
        };
    }
    Some(apparent)
}

/// The envelope fields a request's handling reads, read at once by
/// [`Frame::head`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) opcode: u16,
    pub(crate) transaction_id: Option<Uuid>,
    pub(crate) requires_ack: bool,
    pub(crate) trace_id: Option<Uuid>,
    pub(crate) span_id: u64,
    /// The payload vector's bytes, by their place in the frame.
    pub(crate) payload: Option<std::ops::Range<usize>>,
}

/// The vtable of the table at `table` (its position and length), read as
/// `Verifier::visit_table` reads it; `None` when it is not in `buf`.
fn vtable_of(buf: &[u8], table: usize) -> Option<(usize, usize)> {
    let soffset = i32::from_le_bytes(buf.get(table..table.checked_add(4)?)?.try_into().ok()?);
    let vtable = if soffset > 0 {
        table.checked_sub(soffset.unsigned_abs() as usize)?
    } else {
        table.checked_add(soffset.unsigned_abs() as usize)?
    };
    let len = u16::from_le_bytes(buf.get(vtable..vtable.checked_add(2)?)?.try_into().ok()?);
    let len = usize::from(len);
    buf.get(vtable..vtable.checked_add(len)?)?;
    Some((vtable, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameFields;

    /// The fields of `Message` that [`verify_message`] checks, one arm each.
    const VERIFIED_FIELDS: usize = 22;

    #[test]
    fn the_message_verifier_checks_every_field_of_the_schema() {
        let schema = include_str!("../../../schemas/protocol.fbs");
        let table = schema
            .split("table Message {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("table Message in the schema");
        let fields = table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        assert_eq!(
            fields, VERIFIED_FIELDS,
            "a field was added to Message: verify it in `verify_message`"
        );
        let source = include_str!("frame.rs");
        let checked = source
            .split("fn verify_message(")
            .nth(1)
            .expect("verify_message")
            .split("\n}\n")
            .next()
            .expect("its body")
            .matches("            M::VT_")
            .count();
        assert_eq!(checked, VERIFIED_FIELDS);
    }

    /// A frame with every field set (strings and vectors non-empty).
    fn every_field() -> Vec<u8> {
        FrameFields::new(Opcode::Publish.0)
            .transaction_id(Some(Uuid::from_u128(1)))
            .requires_ack(true)
            .channel("chan")
            .receiver_id(Some(Uuid::from_u128(2)))
            .emitter_id(Some(Uuid::from_u128(3)))
            .payload(&[1, 2, 3, 4, 5])
            .token("tok")
            .trace_id(Some(Uuid::from_u128(4)))
            .span_id(5)
            .parent_span_id(6)
            .error(ErrorCode::BadFrame, "bad")
            .node_id(Some(Uuid::from_u128(7)))
            .retry_after_ms(8)
            .offset(9)
            .epoch("ep")
            .recover(true)
            .recovered(true)
            .limit(10)
            .user_id("user")
            .expires_at_ms(11)
            .encode()
            .to_vec()
    }

    /// Whether the generated verifier, ours and the plain check agree about `buf`.
    fn agree(buf: &[u8], opts: &VerifierOptions) -> Result<(), String> {
        let generated = flatbuffers::root_with_opts::<fbs::Message<'_>>(opts, buf).is_ok();
        let ours = verify_message(opts, buf).is_ok();
        let plain = message_is_sound(opts, buf);
        if generated == ours && ours == plain {
            match Frame::decode(Bytes::copy_from_slice(buf), &DecodeLimits::default()) {
                Ok(frame) => head_agrees(&frame),
                Err(_) => Ok(()),
            }
        } else {
            Err(format!(
                "generated {generated}, ours {ours}, the plain check {plain}: {buf:?}"
            ))
        }
    }

    /// Whether `Frame::head` reads what the generated accessors read.
    fn head_agrees(frame: &Frame) -> Result<(), String> {
        let m = frame.message();
        let head = frame.head();
        let by_accessors = Head {
            opcode: m.opcode().0,
            transaction_id: frame.transaction_id(),
            requires_ack: m.requires_ack(),
            trace_id: frame.trace_id(),
            span_id: m.span_id(),
            payload: head.payload.clone(),
        };
        let payload = m.payload().map(|p| p.bytes());
        if head == by_accessors
            && frame.payload_at(&head.payload).as_ref() == payload.unwrap_or(&[])
        {
            Ok(())
        } else {
            Err(format!(
                "head {head:?}, accessors {by_accessors:?}, payload {payload:?}"
            ))
        }
    }

    #[test]
    fn the_head_reads_what_the_accessors_read() {
        let frames = [
            every_field(),
            FrameFields::new(200).encode().to_vec(),
            FrameFields::new(0).payload(&[]).encode().to_vec(),
            FrameFields::new(201)
                .span_id(u64::MAX)
                .requires_ack(false)
                .encode()
                .to_vec(),
            crate::protocol::reply_frame(300, None, Some(&Uuid::from_u128(9)), 3, Some(b"abc"))
                .to_vec(),
        ];
        for buf in frames {
            let frame = Frame::decode(Bytes::from(buf), &DecodeLimits::default()).unwrap();
            head_agrees(&frame).unwrap();
        }
        let full = Frame::decode(Bytes::from(every_field()), &DecodeLimits::default()).unwrap();
        let head = full.head();
        assert_eq!(head.opcode, Opcode::Publish.0);
        assert_eq!(head.transaction_id, Some(Uuid::from_u128(1)));
        assert!(head.requires_ack);
        assert_eq!(head.trace_id, Some(Uuid::from_u128(4)));
        assert_eq!(head.span_id, 5);
        assert_eq!(full.payload_at(&head.payload).as_ref(), &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_message_verifier_accepts_what_the_generated_one_accepts() {
        let opts = DecodeLimits::default().verifier_options();
        let full = every_field();
        assert!(verify_message(&opts, &full).is_ok());
        agree(&full, &opts).unwrap();
        // Every truncation, and every byte of the frame set to a few values.
        for n in 0..full.len() {
            agree(&full[..n], &opts).unwrap();
        }
        for i in 0..full.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = full.clone();
                bad[i] = value;
                agree(&bad, &opts).unwrap();
            }
        }
        // Every size limit up to past the frame's apparent size, and the table
        // limits, decide alike (both count the same bytes).
        let mut passed = false;
        for size in 0..4 * full.len() {
            let opts = VerifierOptions {
                max_apparent_size: size,
                ..opts
            };
            agree(&full, &opts).unwrap();
            passed |= verify_message(&opts, &full).is_ok();
        }
        assert!(passed, "the largest limits pass");
        for tables in [0, 1, 2] {
            let opts = VerifierOptions {
                max_tables: tables,
                ..opts
            };
            agree(&full, &opts).unwrap();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn the_message_verifier_agrees_with_the_generated_one_on_mutated_frames(
            edits in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..6),
            cut in 0usize..400,
        ) {
            let opts = DecodeLimits::default().verifier_options();
            let mut buf = every_field();
            for (i, value) in edits {
                let i = i % buf.len();
                buf[i] = value;
            }
            buf.truncate(buf.len().saturating_sub(cut % 8));
            agree(&buf, &opts).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }

    #[test]
    fn rejects_short_empty_and_unidentified_buffers() {
        let l = DecodeLimits::default();
        assert_eq!(
            Frame::decode(Bytes::new(), &l).unwrap_err(),
            FrameError::Empty
        );
        for n in 1..8 {
            let e = Frame::decode(Bytes::from(vec![0u8; n]), &l).unwrap_err();
            assert_eq!(e, FrameError::MissingIdentifier);
        }
        let mut ok = FrameFields::new(Opcode::Ping.0).encode().to_vec();
        ok[4] = b'X';
        let e = Frame::decode(Bytes::from(ok), &l).unwrap_err();
        assert_eq!(e, FrameError::MissingIdentifier);
    }

    #[test]
    fn rejects_oversized_buffers() {
        let l = DecodeLimits::for_max_size(64);
        let big = FrameFields::new(Opcode::Publish.0)
            .channel("c")
            .payload(&[7u8; 100])
            .encode();
        assert!(matches!(
            Frame::decode(big, &l),
            Err(FrameError::TooLarge { limit: 64, .. })
        ));
    }

    #[test]
    fn round_trips_every_field() {
        let tx = Uuid::new_v4();
        let bytes = FrameFields::new(250)
            .transaction_id(Some(tx))
            .requires_ack(true)
            .channel("room")
            .receiver_id(Some(Uuid::from_u128(1)))
            .emitter_id(Some(Uuid::from_u128(2)))
            .payload(b"hello")
            .token("t")
            .trace_id(Some(Uuid::from_u128(3)))
            .span_id(4)
            .parent_span_id(5)
            .error(ErrorCode::NotFound, "nope")
            .node_id(Some(Uuid::from_u128(6)))
            .retry_after_ms(7)
            .encode();
        let f = Frame::decode(bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(f.opcode(), 250);
        assert_eq!(f.transaction_id(), Some(tx));
        assert!(f.requires_ack());
        assert_eq!(f.channel(), Some("room"));
        assert_eq!(f.receiver_id(), Some(Uuid::from_u128(1)));
        assert_eq!(f.emitter_id(), Some(Uuid::from_u128(2)));
        assert_eq!(&f.payload()[..], b"hello");
        assert_eq!(f.token(), Some("t"));
        assert_eq!(f.trace_id(), Some(Uuid::from_u128(3)));
        assert_eq!((f.span_id(), f.parent_span_id()), (4, 5));
        assert_eq!(f.error_code(), ErrorCode::NotFound);
        assert_eq!(f.error_message(), Some("nope"));
        assert_eq!(f.node_id(), Some(Uuid::from_u128(6)));
        assert_eq!(f.retry_after_ms(), 7);
    }
}
