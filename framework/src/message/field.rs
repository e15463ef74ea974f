//! How each supported Rust type is stored as a table field. The derive emits one
//! call per field; everything type-specific lives here (vectors in `vector.rs`,
//! enums and unions beside their traits).

use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer, TableVerifier, UnionWIPOffset, WIPOffset};
use uuid::Uuid;

use super::{DecodeError, FlatTable, Message, Schema, TableRef};
use crate::protocol::fbs;

pub(super) type Offset = WIPOffset<UnionWIPOffset>;

/// `push` for out-of-line fields (strings, vectors, tables): always written,
/// absence is the missing offset.
macro_rules! push_offset {
    () => {
        fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, o: Offset) {
            fbb.push_slot_always(slot, o);
        }
    };
}
pub(super) use push_offset;

/// A type that can be a field of a `#[derive(Message)]` struct: `bool`, integers,
/// floats, `String`, `Uuid`, derived messages, enums and unions, `Vec` of those but
/// unions, and `Option<_>` of all of them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported message field type",
    note = "supported: bool, i8..i64, u8..u64, f32, f64, String, Uuid, #[derive(Message)] structs and enums, Vec of those (not of unions: flatc's Python code has no vectors of unions), Option<_> of all of them"
)]
pub trait Field: Sized {
    /// What `prepare` made: an offset for out-of-line values, the value for scalars.
    #[doc(hidden)]
    type Prepared: Copy;
    /// Writes out-of-line parts (strings, vectors, tables) before the table starts.
    #[doc(hidden)]
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared;
    /// Adds the field to the table under construction (defaults may be omitted).
    /// `slot` is the vtable slot of the field's id (of its value, for a union).
    #[doc(hidden)]
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared);
    /// Adds the field even when it equals the default (for `Option`).
    #[doc(hidden)]
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared) {
        Self::push(fbb, slot, prepared)
    }
    /// Adds the field to a table written without the builder, as `push`
    /// would (defaults left out): scalars and enums do; any other field
    /// refuses the table, which is then built with the builder.
    #[doc(hidden)]
    fn put(&self, table: &mut FlatTable, slot: u16) {
        let _ = slot;
        table.refuse();
    }
    /// `put`, also when the value is the default (for `Option`).
    #[doc(hidden)]
    fn put_always(&self, table: &mut FlatTable, slot: u16) {
        self.put(table, slot)
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
    /// The field's type in `.fbs` syntax, registering any definition it needs.
    #[doc(hidden)]
    fn fbs_type(schema: &mut Schema) -> String;
    /// The default in `.fbs` syntax (`= null` for optional scalars, `= Name` for
    /// an enum without a zero value), or empty.
    #[doc(hidden)]
    fn fbs_default() -> String {
        String::new()
    }
    /// Whether the value is stored inline as a scalar.
    #[doc(hidden)]
    const IS_SCALAR: bool = false;
    /// Whether the value is a scalar, or an optional one: a table whose fields
    /// all are is [`Message::FLAT`](super::Message::FLAT).
    #[doc(hidden)]
    const FLAT: bool = Self::IS_SCALAR;
    /// How many field ids the field takes: 2 for a union (its type at id - 1,
    /// its value at id), else 1.
    #[doc(hidden)]
    const IDS: u16 = 1;
}

/// What FlatBuffers type a derived Rust type is stored as: a table
/// ([`TableKind`], for a [`Message`]), an enum ([`EnumKind`](super::EnumKind), for
/// an [`Enum`](super::Enum)) or a union ([`UnionKind`](super::UnionKind), for a
/// [`Union`](super::Union)). [`Field`], and vectors of it, follow from the kind.
/// `#[derive(Message)]` implements it; a hand-written `Message` that other
/// messages hold as a field implements it too.
///
/// ```
/// # use framework::message::{Enum, EnumKind, FieldKind};
/// # #[derive(Debug, Clone, Copy, PartialEq)] enum Level { Low }
/// # impl Enum for Level {
/// #     const NAME: &'static str = "Level";
/// #     type Repr = u8;
/// #     const VARIANTS: &'static [(&'static str, u8)] = &[("Low", 0)];
/// #     fn to_repr(&self) -> u8 { 0 }
/// #     fn from_repr(r: u8) -> Option<Self> { (r == 0).then_some(Level::Low) }
/// # }
/// impl FieldKind for Level {
///     type Kind = EnumKind;
/// }
/// ```
// The same words as `Field`'s: rustc may report either for one bad field type,
// and identical errors at one span are shown once.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a supported message field type",
    note = "supported: bool, i8..i64, u8..u64, f32, f64, String, Uuid, #[derive(Message)] structs and enums, Vec of those (not of unions: flatc's Python code has no vectors of unions), Option<_> of all of them"
)]
pub trait FieldKind {
    /// [`TableKind`], [`EnumKind`](super::EnumKind) or [`UnionKind`](super::UnionKind).
    type Kind;
}

/// The kind of a [`Message`]: stored as a table.
#[derive(Debug)]
pub struct TableKind;

/// How a kind stores a `T` in a field: [`Field`]'s methods, implemented once per
/// kind so that each derived type only names its kind.
#[doc(hidden)]
pub trait Storage<T> {
    type Prepared: Copy;
    const IS_SCALAR: bool = false;
    const IDS: u16 = 1;
    fn prepare(value: &T, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared;
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared);
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared) {
        Self::push(fbb, slot, prepared)
    }
    fn put(value: &T, table: &mut FlatTable, slot: u16) {
        let _ = (value, slot);
        table.refuse();
    }
    fn put_always(value: &T, table: &mut FlatTable, slot: u16) {
        Self::put(value, table, slot)
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer>;
    fn read(table: &TableRef<'_>, slot: u16) -> Result<Option<T>, DecodeError>;
    fn absent(name: &'static str) -> Result<T, DecodeError>;
    fn fbs_type(schema: &mut Schema) -> String;
    fn fbs_default() -> String {
        String::new()
    }
}

impl<T: FieldKind> Field for T
where
    T::Kind: Storage<T>,
{
    type Prepared = <T::Kind as Storage<T>>::Prepared;
    const IS_SCALAR: bool = <T::Kind as Storage<T>>::IS_SCALAR;
    const IDS: u16 = <T::Kind as Storage<T>>::IDS;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared {
        <T::Kind as Storage<T>>::prepare(self, fbb)
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared) {
        <T::Kind as Storage<T>>::push(fbb, slot, prepared)
    }
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, prepared: Self::Prepared) {
        <T::Kind as Storage<T>>::push_always(fbb, slot, prepared)
    }
    fn put(&self, table: &mut FlatTable, slot: u16) {
        <T::Kind as Storage<T>>::put(self, table, slot)
    }
    fn put_always(&self, table: &mut FlatTable, slot: u16) {
        <T::Kind as Storage<T>>::put_always(self, table, slot)
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        <T::Kind as Storage<T>>::verify(tv, name, slot)
    }
    fn read(table: &TableRef<'_>, slot: u16) -> Result<Option<T>, DecodeError> {
        <T::Kind as Storage<T>>::read(table, slot)
    }
    fn absent(name: &'static str) -> Result<T, DecodeError> {
        <T::Kind as Storage<T>>::absent(name)
    }
    fn fbs_type(schema: &mut Schema) -> String {
        <T::Kind as Storage<T>>::fbs_type(schema)
    }
    fn fbs_default() -> String {
        <T::Kind as Storage<T>>::fbs_default()
    }
}

impl<M: Message> Storage<M> for TableKind {
    type Prepared = Offset;
    fn prepare(value: &M, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        value.build_table(fbb).as_union_value()
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

/// A fixed-size little-endian value.
#[doc(hidden)]
pub trait Scalar:
    Copy + PartialEq + Default + flatbuffers::Push<Output = Self> + flatbuffers::Verifiable
{
    const SIZE: usize;
    const FBS: &'static str;
    fn from_le(bytes: &[u8]) -> Self;
    /// Writes the little-endian bytes into `out` (`SIZE` bytes long).
    fn write_le(self, out: &mut [u8]);
    /// Whether the value is the table default (bitwise, so `-0.0` is not).
    fn is_default(self) -> bool;
}

/// Reads the scalar stored in `slot`, if present: in bounds and aligned (to its
/// position in the buffer) as flatbuffers' verifier requires, so that a table
/// of scalars needs no verifier pass (see [`Message::FLAT`](super::Message::FLAT)).
pub(super) fn read_scalar<S: Scalar>(
    t: &TableRef<'_>,
    slot: u16,
) -> Result<Option<S>, DecodeError> {
    match t.field_pos(slot)? {
        Some(p) if p % std::mem::align_of::<S>() != 0 => Err(super::reader::unaligned::<S>(p)),
        Some(p) => Ok(Some(S::from_le(t.bytes(p, S::SIZE)?))),
        None => Ok(None),
    }
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
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
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
            fn put(&self, table: &mut FlatTable, slot: u16) {
                if !<$t as Scalar>::is_default(*self) {
                    table.scalar(slot, *self);
                }
            }
            fn put_always(&self, table: &mut FlatTable, slot: u16) {
                table.scalar(slot, *self);
            }
            fn verify<'v, 'o, 'b>(tv: TableVerifier<'v, 'o, 'b>, name: &'static str, slot: u16)
                -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
                verify_field::<$t>(tv, name, slot)
            }
            fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<$t>, DecodeError> {
                read_scalar(t, slot)
            }
            fn absent(_: &'static str) -> Result<$t, DecodeError> { Ok(<$t>::default()) }
            fn fbs_type(_: &mut Schema) -> String { $fbs.to_string() }
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
    fn write_le(self, out: &mut [u8]) {
        out[0] = u8::from(self);
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
    fn put(&self, table: &mut FlatTable, slot: u16) {
        if *self {
            table.scalar(slot, true);
        }
    }
    fn put_always(&self, table: &mut FlatTable, slot: u16) {
        table.scalar(slot, *self);
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        verify_field::<bool>(tv, name, slot)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<bool>, DecodeError> {
        read_scalar(t, slot)
    }
    fn absent(_: &'static str) -> Result<bool, DecodeError> {
        Ok(false)
    }
    fn fbs_type(_: &mut Schema) -> String {
        "bool".to_string()
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
        verify_field::<flatbuffers::ForwardsUOffset<&str>>(tv, name, slot)
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
        verify_field::<fbs::Uuid>(tv, name, slot)
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

impl<T: Field> Field for Option<T> {
    type Prepared = Option<T::Prepared>;
    const IDS: u16 = T::IDS;
    const FLAT: bool = T::FLAT;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Self::Prepared {
        self.as_ref().map(|v| v.prepare(fbb))
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, p: Self::Prepared) {
        if let Some(p) = p {
            T::push_always(fbb, slot, p);
        }
    }
    fn put(&self, table: &mut FlatTable, slot: u16) {
        if let Some(v) = self {
            v.put_always(table, slot);
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
    fn fbs_default() -> String {
        // Optional scalars (enums included) need `= null` to tell "absent" from
        // the default; that replaces an enum's `= Name`.
        if T::IS_SCALAR {
            " = null".to_string()
        } else {
            T::fbs_default()
        }
    }
}

/// Verifies a field as `TableVerifier::visit_field` does, without passing
/// the table verifier through it by value when the field is fine: a typed
/// request's payload is verified field by field on every frame, and that
/// passing was most of the cost (~90 instructions per `i64`, callgrind). A
/// field that fails is verified again through `visit_field`, which fails too
/// (what the checks count only grows) and names the field in its error.
pub(crate) fn verify_field<'v, 'o, 'b, T: flatbuffers::Verifiable>(
    mut tv: TableVerifier<'v, 'o, 'b>,
    name: &'static str,
    slot: u16,
) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
    match tv.deref(slot) {
        Ok(None) => return Ok(tv),
        Ok(Some(pos)) if T::run_verifier(tv.verifier(), pos).is_ok() => return Ok(tv),
        _ => {}
    }
    tv.visit_field::<T>(name, slot, false)
}
