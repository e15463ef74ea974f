//! Typed messages: FlatBuffers tables derived from Rust structs with
//! `#[derive(framework::Message)]`, verified on decode, with their schema exportable
//! as `.fbs` text; fields of them may be FlatBuffers enums ([`Enum`]) and unions
//! ([`Union`]), derived from Rust enums.
//!
//! What the derive generates for
//! `#[derive(Message)] struct ChatLine { room: String, text: String }`,
//! written by hand (the docs of [`Message`](macro@crate::Message) show an enum's):
//!
//! ```
//! use framework::message::{DecodeError, Field, FieldKind, FlatTable, Message, Schema, TableKind, TableRef};
//! use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer, TableFinishedWIPOffset, Verifier, WIPOffset};
//!
//! #[derive(Debug, PartialEq)]
//! struct ChatLine { room: String, text: String }
//!
//! impl Message for ChatLine {
//!     const TABLE: &'static str = "ChatLine";
//!     fn build_table<'b>(&self, fbb: &mut FlatBufferBuilder<'b>) -> WIPOffset<TableFinishedWIPOffset> {
//!         let room = Field::prepare(&self.room, fbb);
//!         let text = Field::prepare(&self.text, fbb);
//!         let start = fbb.start_table();
//!         <String as Field>::push(fbb, 4, room); // field id 0 -> vtable slot 4
//!         <String as Field>::push(fbb, 6, text); // field id 1 -> vtable slot 6
//!         fbb.end_table(start)
//!     }
//!     fn verify_table(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer> {
//!         let tv = v.visit_table(pos)?;
//!         let tv = <String as Field>::verify(tv, "room", 4)?;
//!         let tv = <String as Field>::verify(tv, "text", 6)?;
//!         tv.finish();
//!         Ok(())
//!     }
//!     // `true && ` each field's `FLAT`: false here (strings). A table of
//!     // scalars (and enums) is decoded without the verifier pass, and encoded
//!     // without the builder, through `write_flat` (strings refuse it).
//!     const FLAT: bool = true && <String as Field>::FLAT && <String as Field>::FLAT;
//!     fn write_flat(&self, table: &mut FlatTable) {
//!         Field::put(&self.room, table, 4);
//!         Field::put(&self.text, table, 6);
//!     }
//!     fn read_table(t: TableRef<'_>) -> Result<Self, DecodeError> {
//!         Ok(ChatLine {
//!             room: match Field::read(&t, 4)? { Some(v) => v, None => Field::absent("room")? },
//!             text: match Field::read(&t, 6)? { Some(v) => v, None => Field::absent("text")? },
//!         })
//!     }
//!     fn describe(schema: &mut Schema) {
//!         schema.add_table("ChatLine", |s| {
//!             format!("table ChatLine {{\n  room: {} (id: 0);\n  text: {} (id: 1);\n}}\n",
//!                 <String as Field>::fbs_type(s), <String as Field>::fbs_type(s))
//!         });
//!     }
//! }
//!
//! // A field of other messages, stored as a table.
//! impl FieldKind for ChatLine {
//!     type Kind = TableKind;
//! }
//!
//! let line = ChatLine { room: "rust".into(), text: "hi".into() };
//! assert_eq!(ChatLine::decode(&line.encode()).unwrap(), line);
//! assert!(ChatLine::schema(None).contains("table ChatLine"));
//! ```

mod enumeration;
mod field;
mod flat;
mod reader;
mod schema;
mod union;
mod vector;

use bytes::Bytes;
use flatbuffers::{
    FlatBufferBuilder, InvalidFlatbuffer, TableFinishedWIPOffset, Verifier, VerifierOptions,
    WIPOffset,
};

pub use enumeration::{Enum, EnumKind, EnumRepr};
pub use field::{Field, FieldKind, Scalar, Storage, TableKind};
pub use flat::FlatTable;
pub use reader::TableRef;
pub use schema::Schema;
pub use union::{Union, UnionKind, UnionMember};
pub use vector::{Element, VectorStorage};

/// Why a payload is not a valid message of the expected type (answered with
/// `Error`/`BadPayload`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The FlatBuffers verifier rejected the buffer (why, on one line).
    #[error("invalid flatbuffer: {0}")]
    Invalid(String),
    /// An offset or length points outside the buffer.
    #[error("offset out of bounds")]
    OutOfBounds,
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    InvalidUtf8,
    /// A nested message or union that must be present is absent.
    #[error("required field `{0}` is missing")]
    Missing(&'static str),
    /// An enum value or union type that is none of the type's variants.
    #[error("{value} is not a variant of `{ty}`")]
    UnknownVariant {
        /// The enum or union.
        ty: &'static str,
        /// The value on the wire.
        value: i128,
    },
    /// Larger than the limit.
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
}

impl From<InvalidFlatbuffer> for DecodeError {
    /// flatbuffers' text ends with a newline and may go on with one line per step
    /// of its trace: made one line, the trace in parentheses.
    fn from(e: InvalidFlatbuffer) -> Self {
        let text = e.to_string();
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut out = lines
            .next()
            .unwrap_or("rejected by the verifier")
            .to_string();
        let trace: Vec<&str> = lines.collect();
        if !trace.is_empty() {
            out.push_str(&format!(" ({})", trace.join(", ")));
        }
        DecodeError::Invalid(out)
    }
}

/// Limits for decoding untrusted payloads. The buffer's own length is checked
/// against `max_size` separately; the verifier's "apparent size" counts shared
/// vtables once per table that uses them, so it gets headroom beyond the length
/// (it is the bound against DAG blow-up, not against size).
pub(crate) fn payload_options(max_size: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: 32,
        max_tables: 100_000,
        max_apparent_size: max_size.saturating_mul(8),
        ignore_missing_null_terminator: false,
    }
}

/// Decodes `buf` after flatbuffers' verifier accepted it (with the limits of a
/// payload of at most `max_size` bytes), whatever [`Message::FLAT`] says: what
/// [`Message::decode_limited`] does for tables with offsets, and the reference
/// its checks for tables of scalars are tested against. Not a public API.
#[doc(hidden)]
pub fn decode_verified<M: Message>(buf: &[u8], max_size: usize) -> Result<M, DecodeError> {
    let opts = payload_options(max_size);
    let mut v = Verifier::new(&opts, buf);
    let root = v.get_uoffset(0)? as usize;
    M::verify_table(&mut v, root)?;
    M::read_table(TableRef::root(buf)?)
}

/// A Rust type stored as a FlatBuffers table: a payload (the root of a buffer) or
/// a field of another message. Implemented by `#[derive(framework::Message)]` on
/// structs; the module docs show what it generates. Enums and unions are never
/// `Message`s (a FlatBuffers root is a table): they are [`Enum`]s and [`Union`]s,
/// field types only.
pub trait Message: Sized + Send + Sync + 'static {
    /// The table's name in the schema.
    const TABLE: &'static str;

    /// Writes the table (and everything it refers to) into `fbb`.
    fn build_table<'b>(&self, fbb: &mut FlatBufferBuilder<'b>)
        -> WIPOffset<TableFinishedWIPOffset>;

    /// Verifies the table at `pos` with flatbuffers' verifier.
    fn verify_table(v: &mut Verifier<'_, '_>, pos: usize) -> Result<(), InvalidFlatbuffer>;

    /// Reads a verified table. Every read is bounds-checked anyway.
    fn read_table(table: TableRef<'_>) -> Result<Self, DecodeError>;

    /// Whether every field is a scalar or an enum (a table with no offsets in
    /// it: no strings, vectors, tables or unions). Such a payload is decoded
    /// without flatbuffers' verifier: its reads are bounds-checked and
    /// alignment-checked, and [`decode_limited`](Message::decode_limited) makes
    /// the verifier's other checks itself, so exactly the same buffers are
    /// accepted (a buffer it refuses goes through the verifier, for the same
    /// error). The derive sets it; `false` (always verify) by default.
    #[doc(hidden)]
    const FLAT: bool = false;

    /// Adds this table and the tables it refers to to `schema`.
    fn describe(schema: &mut Schema);

    /// Writes the fields into a table written without the builder, when they
    /// all are scalars or enums ([`FLAT`](Message::FLAT)); any other field
    /// refuses the table. The derive generates it (one `Field::put` per
    /// field); by default the table is refused and the builder is used.
    #[doc(hidden)]
    fn write_flat(&self, table: &mut FlatTable) {
        table.refuse();
    }

    /// Encodes as a standalone FlatBuffers buffer (the payload of a frame).
    fn encode(&self) -> Bytes {
        if let Some(table) = FlatTable::of(self) {
            let mut out = Vec::with_capacity(table.len());
            table.write(&mut out);
            return Bytes::from(out);
        }
        let mut fbb = FlatBufferBuilder::with_capacity(128);
        let root = self.build_table(&mut fbb);
        fbb.finish_minimal(root);
        Bytes::copy_from_slice(fbb.finished_data())
    }

    /// Verifies and decodes an untrusted buffer of at most 1 MiB.
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_limited(buf, crate::config::DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// Verifies and decodes an untrusted buffer of at most `max_size` bytes.
    fn decode_limited(buf: &[u8], max_size: usize) -> Result<Self, DecodeError> {
        if buf.len() > max_size {
            return Err(DecodeError::TooLarge(buf.len()));
        }
        if Self::FLAT {
            // A table of scalars: the reads check bounds and alignment, the
            // table's frame is checked here (with the opcode lookup's FxHash,
            // rpc went 7,000 -> 6,460 instructions per request, valgrind).
            // A buffer refused is decoded again through the verifier, whose
            // error names the field at fault.
            if let Ok(message) = reader::flat_root(buf).and_then(Self::read_table) {
                return Ok(message);
            }
        }
        decode_verified(buf, max_size)
    }

    /// This type's schema (with its dependencies) as `.fbs` text, `root_type` set.
    fn schema(namespace: Option<&str>) -> String {
        let mut s = Schema::new(namespace);
        Self::describe(&mut s);
        s.set_root(Self::TABLE);
        s.to_fbs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_one_line(e: &DecodeError) {
        let text = e.to_string();
        assert!(
            !text.contains('\n') && !text.contains('\t') && text.trim() == text,
            "{text:?}"
        );
    }

    #[test]
    fn verifier_errors_are_one_line() {
        // Without a trace: flatbuffers' text still ends with a newline.
        let e = DecodeError::from(InvalidFlatbuffer::TooManyTables);
        assert_eq!(e.to_string(), "invalid flatbuffer: Too many tables.");
        assert_one_line(&e);
        // With a trace: one line per step, made one line.
        let Err(e) = flatbuffers::InvalidFlatbuffer::new_missing_required::<()>("name") else {
            unreachable!()
        };
        let e = DecodeError::from(e);
        assert_eq!(
            e.to_string(),
            "invalid flatbuffer: Missing required field `name`."
        );
        assert_one_line(&e);
    }

    #[test]
    fn a_traced_verifier_error_keeps_its_trace_on_the_line() {
        // A string field whose bytes are not UTF-8: flatbuffers traces the field.
        let mut fbb = FlatBufferBuilder::new();
        let s = fbb.create_string("abcd");
        let start = fbb.start_table();
        fbb.push_slot_always(4, s);
        let root = fbb.end_table(start);
        fbb.finish_minimal(root);
        let mut bytes = fbb.finished_data().to_vec();
        let at = bytes.windows(4).position(|w| w == b"abcd").unwrap();
        bytes[at] = 0xff;
        let opts = payload_options(1024);
        let mut v = Verifier::new(&opts, &bytes);
        let root = v.get_uoffset(0).unwrap() as usize;
        let e = v
            .visit_table(root)
            .and_then(|tv| tv.visit_field::<flatbuffers::ForwardsUOffset<&str>>("text", 4, false))
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains('\n'), "{e:?}");
        let e = DecodeError::from(e);
        assert_one_line(&e);
        let text = e.to_string();
        assert_eq!(
            text,
            "invalid flatbuffer: Utf8 error for string in 24..28: invalid utf-8 sequence of 1 \
             bytes from index 0 (while verifying table field `text` at position 16)"
        );
    }

    #[test]
    fn unknown_variants_name_the_type_and_value() {
        let e = DecodeError::UnknownVariant {
            ty: "Color",
            value: 7,
        };
        assert_eq!(e.to_string(), "7 is not a variant of `Color`");
    }
}
