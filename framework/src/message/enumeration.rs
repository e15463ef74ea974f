//! Fieldless Rust enums stored as FlatBuffers enums: an integer on the wire, a
//! value that is no variant is a [`DecodeError`], never a panic.

use flatbuffers::{FlatBufferBuilder, InvalidFlatbuffer, TableVerifier};

use super::field::{read_scalar, Offset, Scalar, Storage};
use super::vector::{read_scalars, Element, VectorStorage};
use super::{DecodeError, FlatTable, Schema, TableRef};

/// The integer types an [`Enum`] can be stored as: `u8` (`ubyte`), `i8` (`byte`),
/// `u16` (`ushort`), `i16` (`short`), `u32` (`uint`), `i32` (`int`), `u64`
/// (`ulong`), `i64` (`long`).
pub trait EnumRepr: Scalar + Element + Into<i128> {}

impl EnumRepr for u8 {}
impl EnumRepr for i8 {}
impl EnumRepr for u16 {}
impl EnumRepr for i16 {}
impl EnumRepr for u32 {}
impl EnumRepr for i32 {}
impl EnumRepr for u64 {}
impl EnumRepr for i64 {}

/// A fieldless Rust enum stored as a FlatBuffers enum. Implemented by
/// `#[derive(framework::Message)]` on an enum whose variants are all units, which
/// also sets its [`FieldKind`](super::FieldKind) to [`EnumKind`]; the docs of
/// [`Message`](macro@crate::Message) show both written by hand.
///
/// An enum is a field type (plain, in `Option` and in `Vec`), never a payload of
/// its own: FlatBuffers' root is always a table, so an `Enum` is not a
/// [`Message`](super::Message). An absent field reads as [`Enum::default_repr`]'s
/// variant, and a value that is no variant fails to decode.
pub trait Enum: Sized + Send + Sync + 'static {
    /// The enum's name in the schema.
    const NAME: &'static str;
    /// The integer type on the wire.
    type Repr: EnumRepr;
    /// Every variant: its name in the schema and its value.
    const VARIANTS: &'static [(&'static str, Self::Repr)];
    /// The variant's value.
    fn to_repr(&self) -> Self::Repr;
    /// The variant with value `repr`, if there is one.
    fn from_repr(repr: Self::Repr) -> Option<Self>;

    /// The value an absent field has: 0 when a variant has it, else the lowest
    /// value (flatc requires a field's default to be a variant). The derive
    /// overrides it with the value it computed the same way.
    fn default_repr() -> Self::Repr {
        let lowest = Self::VARIANTS
            .iter()
            .map(|(_, v)| *v)
            .min_by_key(|v| Into::<i128>::into(*v));
        match lowest {
            Some(v) if Self::VARIANTS.iter().all(|(_, w)| !w.is_default()) => v,
            _ => Self::Repr::default(),
        }
    }

    /// Adds `enum NAME : repr { ... }` (variants in value order) to `schema`.
    fn describe(schema: &mut Schema) {
        schema.add_table(Self::NAME, |_| {
            let mut variants: Vec<(&str, i128)> = Self::VARIANTS
                .iter()
                .map(|(n, v)| (*n, (*v).into()))
                .collect();
            variants.sort_by_key(|(_, v)| *v);
            let body: Vec<String> = variants
                .iter()
                .map(|(name, value)| format!("  {name} = {value},\n"))
                .collect();
            format!(
                "enum {} : {} {{\n{}}}\n",
                Self::NAME,
                <Self::Repr as Scalar>::FBS,
                body.concat()
            )
        });
    }
}

/// The kind of every [`Enum`]: stored as its integer.
#[derive(Debug)]
pub struct EnumKind;

fn variant<E: Enum>(repr: E::Repr) -> Result<E, DecodeError> {
    E::from_repr(repr).ok_or(DecodeError::UnknownVariant {
        ty: E::NAME,
        value: repr.into(),
    })
}

impl<E: Enum> Storage<E> for EnumKind {
    type Prepared = E::Repr;
    const IS_SCALAR: bool = true;
    fn prepare(value: &E, _: &mut FlatBufferBuilder<'_>) -> E::Repr {
        value.to_repr()
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: E::Repr) {
        if v != E::default_repr() {
            fbb.push_slot_always::<E::Repr>(slot, v);
        }
    }
    fn push_always(fbb: &mut FlatBufferBuilder<'_>, slot: u16, v: E::Repr) {
        fbb.push_slot_always::<E::Repr>(slot, v);
    }
    fn put(value: &E, table: &mut FlatTable, slot: u16) {
        let v = value.to_repr();
        if v != E::default_repr() {
            table.scalar(slot, v);
        }
    }
    fn put_always(value: &E, table: &mut FlatTable, slot: u16) {
        table.scalar(slot, value.to_repr());
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        super::field::verify_field::<E::Repr>(tv, name, slot)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<E>, DecodeError> {
        read_scalar::<E::Repr>(t, slot)?.map(variant).transpose()
    }
    fn absent(_: &'static str) -> Result<E, DecodeError> {
        variant(E::default_repr())
    }
    fn fbs_type(schema: &mut Schema) -> String {
        E::describe(schema);
        E::NAME.to_string()
    }
    fn fbs_default() -> String {
        let default = E::default_repr();
        match E::VARIANTS.iter().find(|(_, v)| *v == default) {
            Some((name, _)) if !default.is_default() => format!(" = {name}"),
            _ => String::new(),
        }
    }
}

impl<E: Enum> VectorStorage<E> for EnumKind {
    fn prepare_vector(items: &[E], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let values: Vec<E::Repr> = items.iter().map(E::to_repr).collect();
        E::Repr::prepare_vector(&values, fbb)
    }
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        E::Repr::verify_vector(tv, name, slot)
    }
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<E>>, DecodeError> {
        read_scalars::<E::Repr>(t, slot)?
            .map(|values| values.into_iter().map(variant).collect())
            .transpose()
    }
    fn fbs_element(schema: &mut Schema) -> String {
        E::describe(schema);
        E::NAME.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-written, so `default_repr` is the provided one.
    #[derive(Debug, PartialEq)]
    enum Level {
        High = 7,
        Low = -3,
    }

    impl Enum for Level {
        const NAME: &'static str = "Level";
        type Repr = i8;
        const VARIANTS: &'static [(&'static str, i8)] = &[("High", 7), ("Low", -3)];
        fn to_repr(&self) -> i8 {
            match self {
                Level::High => 7,
                Level::Low => -3,
            }
        }
        fn from_repr(repr: i8) -> Option<Self> {
            match repr {
                7 => Some(Level::High),
                -3 => Some(Level::Low),
                _ => None,
            }
        }
    }

    #[derive(Debug, PartialEq)]
    enum Zero {
        One = 1,
        Nought = 0,
    }

    impl Enum for Zero {
        const NAME: &'static str = "Zero";
        type Repr = u16;
        const VARIANTS: &'static [(&'static str, u16)] = &[("One", 1), ("Nought", 0)];
        fn to_repr(&self) -> u16 {
            match self {
                Zero::One => 1,
                Zero::Nought => 0,
            }
        }
        fn from_repr(repr: u16) -> Option<Self> {
            match repr {
                1 => Some(Zero::One),
                0 => Some(Zero::Nought),
                _ => None,
            }
        }
    }

    #[test]
    fn the_default_is_zero_if_a_variant_else_the_lowest() {
        assert_eq!(Level::default_repr(), -3);
        assert_eq!(
            <EnumKind as Storage<Level>>::absent("level"),
            Ok(Level::Low)
        );
        assert_eq!(<EnumKind as Storage<Level>>::fbs_default(), " = Low");
        assert_eq!(Zero::default_repr(), 0);
        assert_eq!(
            <EnumKind as Storage<Zero>>::absent("zero"),
            Ok(Zero::Nought)
        );
        assert_eq!(<EnumKind as Storage<Zero>>::fbs_default(), "");
    }

    #[test]
    fn the_schema_lists_variants_in_value_order() {
        let mut schema = Schema::new(None);
        Level::describe(&mut schema);
        assert_eq!(
            schema.table_text("Level"),
            Some("enum Level : byte {\n  Low = -3,\n  High = 7,\n}\n")
        );
    }
}
