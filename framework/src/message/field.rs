//! How each supported Rust type is stored as a table field. The derive emits one
//! call per field; everything type-specific lives here.

use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer, TableVerifier, UnionWIPOffset, WIPOffset};
use uuid::Uuid;

use super::{DecodeError, Message, Schema, TableRef};
use crate::protocol::fbs;

type Offset = WIPOffset<UnionWIPOffset>;

/// `push` for out-of-line fields (strings, vectors, tables): always written,
/// absence is the missing offset.
macro_rules! push_offset {
    () => {
        fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, o: Offset) {
            fbb.push_slot_always(slot, o);
        }
    };
}

/// `absent` for vectors: an absent vector reads as empty.
macro_rules! absent_is_empty {
    () => {
        fn absent(_: &'static str) -> Result<Self, DecodeError> {
            Ok(Vec::new())
        }
    };
}

/// A type that can be a field of a `#[derive(Message)]` struct: `bool`, integers,
/// floats, `String`, `Vec<u8>`, `Vec` of scalars, strings or messages, `Option<_>`,
/// `Uuid`, and nested messages.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported message field type",
    note = "supported: bool, i8..i64, u8..u64, f32, f64, String, Uuid, Vec<u8>, Vec of scalars / String / messages, Option<_> of those, and #[derive(Message)] types"
)]
pub trait Field: Sized {
    /// What `prepare` made: an offset for out-of-line values, the value for scalars.
    #[doc(hidden)]
    type Prepared: Copy;
    /// Writes out-of-line parts (strings, vectors, tables) before the table starts.
    #[doc(hidden)]
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared;
    /// Adds the field to the table under construction (defaults may be omitted).
    #[doc(hidden)]
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared);
    /// Adds the field even when it equals the default (for `Option`).
    #[doc(hidden)]
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared) {
        Self::push(fbb, slot, prepared)
    }
    /// Verifies the field with flatbuffers' verifier.
    #[doc(hidden)]
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer>;
    /// Reads the field; `None` when absent.
    #[doc(hidden)]
    fn read(table: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError>;
    /// The value of an absent field (error for fields that must be present).
    #[doc(hidden)]
    fn absent(name: &'static str) -> Result<Self, DecodeError>;
    /// The field's type in `.fbs` syntax, registering any table it needs.
    #[doc(hidden)]
    fn fbs_type(schema: &mut Schema) -> String;
    /// The default in `.fbs` syntax (`= null` for optional scalars).
    #[doc(hidden)]
    fn fbs_default() -> &'static str {
        ""
    }
    /// Whether the value is stored inline as a scalar.
    #[doc(hidden)]
    const IS_SCALAR: bool = false;
}

/// A fixed-size little-endian value.
#[doc(hidden)]
pub trait Scalar:
    Copy + PartialEq + Default + flatbuffers::Push<Output = Self> + flatbuffers::Verifiable
{
    const SIZE: usize;
    const FBS: &'static str;
    fn from_le(bytes: &[u8]) -> Self;
    /// Whether the value is the table default (bitwise, so `-0.0` is not).
    fn is_default(self) -> bool;
}

macro_rules! scalars {
    ($($t:ty => $fbs:literal),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const FBS: &'static str = $fbs;
            fn from_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            fn is_default(self) -> bool {
                self.to_le_bytes().iter().all(|b| *b == 0)
            }
        }
        impl Field for $t {
            const IS_SCALAR: bool = true;
            type Prepared = $t;
            fn prepare(&self, _: &mut FlatBufferBuilder<'_>) -> $t { *self }
            fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: $t) {
                if !<$t as Scalar>::is_default(v) {
                    fbb.push_slot_always::<$t>(slot, v);
                }
            }
            fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: $t) {
                fbb.push_slot_always::<$t>(slot, v);
            }
            fn verify<'v, 'o, 'b>(tv: TableVerifier<'v, 'o, 'b>, name: &'static str, slot: u16)
                -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
                tv.visit_field::<$t>(name, slot, false)
            }
            fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<$t>, DecodeError> {
                match t.field_pos(slot)? {
                    Some(p) => Ok(Some(<$t as Scalar>::from_le(t.bytes(p, Self::SIZE)?))),
                    None => Ok(None),
                }
            }
            fn absent(_: &'static str) -> Result<$t, DecodeError> { Ok(<$t>::default()) }
            fn fbs_type(_: &mut Schema) -> String { $fbs.to_string() }
        }
        impl Field for Vec<$t> {
            type Prepared = Offset;
            fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
                fbb.create_vector(self.as_slice()).as_union_value()
            }
            push_offset!();
            fn verify<'v, 'o, 'b>(tv: TableVerifier<'v, 'o, 'b>, name: &'static str, slot: u16)
                -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
                tv.visit_field::<flatbuffers::ForwardsUOffset<flatbuffers::Vector<'_, $t>>>(name, slot, false)
            }
            fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
                let Some(p) = t.field_pos(slot)? else { return Ok(None) };
                let size = <$t as Scalar>::SIZE;
                let (data, len) = t.vector(p, size)?;
                let bytes = t.bytes(data, len * size)?;
                Ok(Some(bytes.chunks_exact(size).map(<$t as Scalar>::from_le).collect()))
            }
            absent_is_empty!();
            fn fbs_type(_: &mut Schema) -> String { format!("[{}]", $fbs) }
        }
    )*};
}

scalars!(
    i8 => "byte", u8 => "ubyte", i16 => "short", u16 => "ushort",
    i32 => "int", u32 => "uint", i64 => "long", u64 => "ulong",
    f32 => "float", f64 => "double"
);

impl Scalar for bool {
    const SIZE: usize = 1;
    const FBS: &'static str = "bool";
    fn from_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn is_default(self) -> bool {
        !self
    }
}

impl Field for bool {
    const IS_SCALAR: bool = true;
    type Prepared = bool;
    fn prepare(&self, _: &mut FlatBufferBuilder<'_>) -> bool {
        *self
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: bool) {
        fbb.push_slot::<bool>(slot, v, false);
    }
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: bool) {
        fbb.push_slot_always::<bool>(slot, v);
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<bool>(name, slot, false)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<bool>, DecodeError> {
        match t.field_pos(slot)? {
            Some(p) => Ok(Some(t.bytes(p, 1)?[0] != 0)),
            None => Ok(None),
        }
    }
    fn absent(_: &'static str) -> Result<bool, DecodeError> {
        Ok(false)
    }
    fn fbs_type(_: &mut Schema) -> String {
        "bool".to_string()
    }
}

impl Field for Vec<bool> {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        fbb.create_vector(self.as_slice()).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<flatbuffers::ForwardsUOffset<flatbuffers::Vector<'_, bool>>>(
            name, slot, false,
        )
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        let Some(p) = t.field_pos(slot)? else {
            return Ok(None);
        };
        let (data, len) = t.vector(p, 1)?;
        Ok(Some(t.bytes(data, len)?.iter().map(|b| *b != 0).collect()))
    }
    absent_is_empty!();
    fn fbs_type(_: &mut Schema) -> String {
        "[bool]".to_string()
    }
}

impl Field for String {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        fbb.create_string(self).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<flatbuffers::ForwardsUOffset<&str>>(name, slot, false)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<String>, DecodeError> {
        match t.field_pos(slot)? {
            Some(p) => Ok(Some(t.string(p)?.to_string())),
            None => Ok(None),
        }
    }
    fn absent(_: &'static str) -> Result<String, DecodeError> {
        Ok(String::new())
    }
    fn fbs_type(_: &mut Schema) -> String {
        "string".to_string()
    }
}

impl Field for Vec<String> {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let offsets: Vec<_> = self.iter().map(|s| fbb.create_string(s)).collect();
        fbb.create_vector(&offsets).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<flatbuffers::ForwardsUOffset<
            flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>,
        >>(name, slot, false)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        t.offset_vector(slot, |pos| t.string(pos).map(str::to_string))
    }
    absent_is_empty!();
    fn fbs_type(_: &mut Schema) -> String {
        "[string]".to_string()
    }
}

impl Field for Uuid {
    type Prepared = fbs::Uuid;
    fn prepare(&self, _: &mut FlatBufferBuilder<'_>) -> fbs::Uuid {
        fbs::Uuid::new(self.as_bytes())
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: fbs::Uuid) {
        fbb.push_slot_always::<&fbs::Uuid>(slot, &v);
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<fbs::Uuid>(name, slot, false)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Uuid>, DecodeError> {
        match t.field_pos(slot)? {
            Some(p) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(t.bytes(p, 16)?);
                Ok(Some(Uuid::from_bytes(b)))
            }
            None => Ok(None),
        }
    }
    fn absent(_: &'static str) -> Result<Uuid, DecodeError> {
        Ok(Uuid::nil())
    }
    fn fbs_type(schema: &mut Schema) -> String {
        schema.use_uuid();
        "Uuid".to_string()
    }
}

impl Field for Vec<Uuid> {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let ids: Vec<fbs::Uuid> = self.iter().map(|u| fbs::Uuid::new(u.as_bytes())).collect();
        fbb.create_vector(&ids).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_field::<flatbuffers::ForwardsUOffset<flatbuffers::Vector<'_, fbs::Uuid>>>(
            name, slot, false,
        )
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        let Some(p) = t.field_pos(slot)? else {
            return Ok(None);
        };
        let (data, len) = t.vector(p, 16)?;
        let bytes = t.bytes(data, len * 16)?;
        Ok(Some(
            bytes
                .chunks_exact(16)
                .map(|c| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    Uuid::from_bytes(b)
                })
                .collect(),
        ))
    }
    absent_is_empty!();
    fn fbs_type(schema: &mut Schema) -> String {
        schema.use_uuid();
        "[Uuid]".to_string()
    }
}

impl<M: Message> Field for M {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        self.build_table(fbb).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        mut tv: TableVerifier<'v, 'o, 'b>,
        _name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        if let Some(pos) = tv.deref(slot)? {
            let v = tv.verifier();
            let target = pos.saturating_add(v.get_uoffset(pos)? as usize);
            M::verify_table(v, target)?;
        }
        Ok(tv)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<M>, DecodeError> {
        match t.field_pos(slot)? {
            Some(p) => M::read_table(t.table(p)?).map(Some),
            None => Ok(None),
        }
    }
    fn absent(name: &'static str) -> Result<M, DecodeError> {
        Err(DecodeError::Missing(name))
    }
    fn fbs_type(schema: &mut Schema) -> String {
        M::describe(schema);
        M::TABLE.to_string()
    }
}

impl<M: Message> Field for Vec<M> {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let offsets: Vec<_> = self.iter().map(|m| m.build_table(fbb)).collect();
        fbb.create_vector(&offsets).as_union_value()
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        mut tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        // The vector of offsets itself, then each element as an `M` table.
        tv = tv.visit_field::<flatbuffers::ForwardsUOffset<flatbuffers::Vector<'_, u32>>>(
            name, slot, false,
        )?;
        if let Some(pos) = tv.deref(slot)? {
            let v = tv.verifier();
            let start = pos.saturating_add(v.get_uoffset(pos)? as usize);
            let len = v.get_uoffset(start)? as usize;
            for i in 0..len {
                let elem = start + 4 + 4 * i;
                let target = elem.saturating_add(v.get_uoffset(elem)? as usize);
                M::verify_table(v, target)?;
            }
        }
        Ok(tv)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        t.offset_vector(slot, |pos| t.table(pos).and_then(M::read_table))
    }
    absent_is_empty!();
    fn fbs_type(schema: &mut Schema) -> String {
        M::describe(schema);
        format!("[{}]", M::TABLE)
    }
}

impl<T: Field> Field for Option<T> {
    type Prepared = Option<T::Prepared>;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared {
        self.as_ref().map(|v| v.prepare(fbb))
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, p: Self::Prepared) {
        if let Some(p) = p {
            T::push_always(fbb, slot, p);
        }
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        T::verify(tv, name, slot)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        Ok(Some(T::read(t, slot)?))
    }
    fn absent(_: &'static str) -> Result<Self, DecodeError> {
        Ok(None)
    }
    fn fbs_type(schema: &mut Schema) -> String {
        T::fbs_type(schema)
    }
    fn fbs_default() -> &'static str {
        // Optional scalars need `= null` to tell "absent" from zero.
        match T::fbs_default() {
            "" if T::IS_SCALAR => " = null",
            d => d,
        }
    }
}
