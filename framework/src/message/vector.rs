//! Vector fields: `Vec<T>` for every element type FlatBuffers (and flatc's
//! Python code) can put in a vector: scalars, strings, UUIDs, tables and enums.
//! Unions have no [`Element`] impl, so `Vec<Union>` does not compile.

use flatbuffers::{
    FlatBufferBuilder, ForwardsUOffset, InvalidFlatbuffer, TableVerifier, Vector, WIPOffset,
};
use uuid::Uuid;

use super::field::{push_offset, FieldKind, Offset, Scalar, TableKind};
use super::{DecodeError, Field, Message, Schema, TableRef};
use crate::protocol::fbs;

/// A type that can be an element of a vector field (`Vec<T>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an element of a vector field",
    note = "vector elements: bool, i8..i64, u8..u64, f32, f64, String, Uuid, #[derive(Message)] structs and fieldless enums (not unions: flatc's Python code has no vectors of unions)"
)]
#[doc(hidden)]
pub trait Element: Sized {
    /// Writes the vector, returning its offset.
    fn prepare_vector(items: &[Self], fbb: &mut FlatBufferBuilder<'_>) -> Offset;
    /// Verifies the vector in `slot`, if present.
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer>;
    /// Reads the vector in `slot`; `None` when absent.
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<Self>>, DecodeError>;
    /// The element type in `.fbs` syntax.
    fn fbs_element(schema: &mut Schema) -> String;
}

impl<T: Element> Field for Vec<T> {
    type Prepared = Offset;
    fn prepare(&self, fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        T::prepare_vector(self, fbb)
    }
    push_offset!();
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        T::verify_vector(tv, name, slot)
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<Self>, DecodeError> {
        T::read_vector(t, slot)
    }
    /// An absent vector reads as empty.
    fn absent(_: &'static str) -> Result<Self, DecodeError> {
        Ok(Vec::new())
    }
    fn fbs_type(schema: &mut Schema) -> String {
        format!("[{}]", T::fbs_element(schema))
    }
}

/// How a kind stores a vector of `T` ([`Element`]'s methods, once per kind).
#[doc(hidden)]
pub trait VectorStorage<T> {
    fn prepare_vector(items: &[T], fbb: &mut FlatBufferBuilder<'_>) -> Offset;
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer>;
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<T>>, DecodeError>;
    fn fbs_element(schema: &mut Schema) -> String;
}

impl<T: FieldKind> Element for T
where
    T::Kind: VectorStorage<T>,
{
    fn prepare_vector(items: &[T], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        <T::Kind as VectorStorage<T>>::prepare_vector(items, fbb)
    }
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        <T::Kind as VectorStorage<T>>::verify_vector(tv, name, slot)
    }
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<T>>, DecodeError> {
        <T::Kind as VectorStorage<T>>::read_vector(t, slot)
    }
    fn fbs_element(schema: &mut Schema) -> String {
        <T::Kind as VectorStorage<T>>::fbs_element(schema)
    }
}

/// Verifies a vector of inline values of type `E` (scalars, structs).
fn verify_inline<'v, 'o, 'b, E: flatbuffers::SimpleToVerifyInSlice>(
    tv: TableVerifier<'v, 'o, 'b>,
    name: &'static str,
    slot: u16,
) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
    super::field::verify_field::<ForwardsUOffset<Vector<'_, E>>>(tv, name, slot)
}

/// Reads a vector of scalars.
pub(super) fn read_scalars<S: Scalar>(
    t: &TableRef<'_>,
    slot: u16,
) -> Result<Option<Vec<S>>, DecodeError> {
    let Some(p) = t.field_pos(slot)? else {
        return Ok(None);
    };
    let (data, len) = t.vector(p, S::SIZE)?;
    let bytes = t.bytes(data, len * S::SIZE)?;
    Ok(Some(bytes.chunks_exact(S::SIZE).map(S::from_le).collect()))
}

macro_rules! scalar_elements {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn prepare_vector(items: &[$t], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
                fbb.create_vector(items).as_union_value()
            }
            fn verify_vector<'v, 'o, 'b>(tv: TableVerifier<'v, 'o, 'b>, name: &'static str, slot: u16)
                -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
                verify_inline::<$t>(tv, name, slot)
            }
            fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<$t>>, DecodeError> {
                read_scalars(t, slot)
            }
            fn fbs_element(_: &mut Schema) -> String {
                <$t as Scalar>::FBS.to_string()
            }
        }
    )*};
}

scalar_elements!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, bool);

impl Element for String {
    fn prepare_vector(items: &[String], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let offsets: Vec<_> = items.iter().map(|s| fbb.create_string(s)).collect();
        fbb.create_vector(&offsets).as_union_value()
    }
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        super::field::verify_field::<ForwardsUOffset<Vector<'_, ForwardsUOffset<&str>>>>(
            tv, name, slot,
        )
    }
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<String>>, DecodeError> {
        t.offset_vector(slot, |pos| t.string(pos).map(str::to_string))
    }
    fn fbs_element(_: &mut Schema) -> String {
        "string".to_string()
    }
}

impl Element for Uuid {
    fn prepare_vector(items: &[Uuid], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let ids: Vec<fbs::Uuid> = items.iter().map(|u| fbs::Uuid::new(u.as_bytes())).collect();
        fbb.create_vector(&ids).as_union_value()
    }
    fn verify_vector<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        verify_inline::<fbs::Uuid>(tv, name, slot)
    }
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<Uuid>>, DecodeError> {
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
    fn fbs_element(schema: &mut Schema) -> String {
        schema.use_uuid();
        "Uuid".to_string()
    }
}

impl<M: Message> VectorStorage<M> for TableKind {
    fn prepare_vector(items: &[M], fbb: &mut FlatBufferBuilder<'_>) -> Offset {
        let offsets: Vec<WIPOffset<_>> = items.iter().map(|m| m.build_table(fbb)).collect();
        fbb.create_vector(&offsets).as_union_value()
    }
    fn verify_vector<'v, 'o, 'b>(
        mut tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        // The vector of offsets itself, then each element as an `M` table.
        tv = verify_inline::<u32>(tv, name, slot)?;
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
    fn read_vector(t: &TableRef<'_>, slot: u16) -> Result<Option<Vec<M>>, DecodeError> {
        t.offset_vector(slot, |pos| t.table(pos).and_then(M::read_table))
    }
    fn fbs_element(schema: &mut Schema) -> String {
        M::describe(schema);
        M::TABLE.to_string()
    }
}
