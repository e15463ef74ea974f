//! Rust enums of tables stored as FlatBuffers unions: a field of union type is
//! two fields on the wire, the member's type (`ubyte`, 0 = NONE) at id - 1 and the
//! member's table at id, as flatc lays them out.

use flatbuffers::{
    FlatBufferBuilder, InvalidFlatbuffer, TableFinishedWIPOffset, TableVerifier, Verifier,
    WIPOffset,
};

use super::field::{read_scalar, Offset, Storage};
use super::{DecodeError, Message, Schema, TableRef};

/// One member of a [`Union`]: its name in the union and its table.
#[derive(Debug, Clone, Copy)]
pub struct UnionMember {
    /// The member's name in the union (flatc's alias: `name: Table` when it
    /// differs from the table's name).
    pub name: &'static str,
    /// The member's table.
    pub table: &'static str,
    /// Adds the member's table to a schema.
    pub describe: fn(&mut Schema),
}

impl UnionMember {
    /// The member `name`, a table `M`.
    pub const fn of<M: Message>(name: &'static str) -> Self {
        UnionMember {
            name,
            table: M::TABLE,
            describe: M::describe,
        }
    }
}

/// A Rust enum whose every variant holds one [`Message`], stored as a FlatBuffers
/// union. Implemented by `#[derive(framework::Message)]` on such an enum, which
/// also sets its [`FieldKind`](super::FieldKind) to [`UnionKind`]; the docs of
/// [`Message`](macro@crate::Message) show an example.
///
/// A union is a field type (plain: required, absent is
/// [`DecodeError::Missing`]; or in `Option`: absent is `None`), never a payload
/// of its own (a FlatBuffers root is a table) nor a vector element (flatc's
/// Python code has no vectors of unions).
pub trait Union: Sized + Send + Sync + 'static {
    /// The union's name in the schema.
    const NAME: &'static str;
    /// The members; the first has type 1 on the wire (0 is NONE).
    const MEMBERS: &'static [UnionMember];
    /// Builds the member's table: its type (1-based index in `MEMBERS`) and offset.
    fn build_member(
        &self,
        fbb: &mut FlatBufferBuilder<'_>,
    ) -> (u8, WIPOffset<TableFinishedWIPOffset>);
    /// Verifies the table at `pos` as member `member` (1-based).
    fn verify_member(
        member: u8,
        v: &mut Verifier<'_, '_>,
        pos: usize,
    ) -> Result<(), InvalidFlatbuffer>;
    /// Reads `table` as member `member` (1-based).
    fn read_member(member: u8, table: TableRef<'_>) -> Result<Self, DecodeError>;

    /// Adds the member tables and `union NAME { ... }` to `schema`.
    fn describe(schema: &mut Schema) {
        schema.add_table(Self::NAME, |schema| {
            let mut text = format!("union {} {{\n", Self::NAME);
            for member in Self::MEMBERS {
                (member.describe)(schema);
                if member.name == member.table {
                    text.push_str(&format!("  {},\n", member.name));
                } else {
                    text.push_str(&format!("  {}: {},\n", member.name, member.table));
                }
            }
            text.push_str("}\n");
            text
        });
    }
}

/// The kind of every [`Union`]: stored as a type and a table.
#[derive(Debug)]
pub struct UnionKind;

/// The type field's slot: the slot before the value's (its id is one less).
fn type_slot(slot: u16) -> u16 {
    slot.saturating_sub(2)
}

fn is_member<U: Union>(member: u8) -> bool {
    member != 0 && usize::from(member) <= U::MEMBERS.len()
}

impl<U: Union> Storage<U> for UnionKind {
    type Prepared = (u8, Offset);
    const IDS: u16 = 2;
    fn prepare(value: &U, fbb: &mut FlatBufferBuilder<'_>) -> (u8, Offset) {
        let (member, table) = value.build_member(fbb);
        (member, table.as_union_value())
    }
    fn push(fbb: &mut FlatBufferBuilder<'_>, slot: u16, (member, table): (u8, Offset)) {
        fbb.push_slot_always::<u8>(type_slot(slot), member);
        fbb.push_slot_always(slot, table);
    }
    fn verify<'v, 'o, 'b>(
        tv: TableVerifier<'v, 'o, 'b>,
        name: &'static str,
        slot: u16,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        tv.visit_union::<u8, _>(
            name,
            type_slot(slot),
            name,
            slot,
            false,
            |member, v, pos| {
                // An unknown member is left to `read`, which names it.
                if !is_member::<U>(member) {
                    return Ok(());
                }
                let target = pos.saturating_add(v.get_uoffset(pos)? as usize);
                U::verify_member(member, v, target)
            },
        )
    }
    fn read(t: &TableRef<'_>, slot: u16) -> Result<Option<U>, DecodeError> {
        let member = read_scalar::<u8>(t, type_slot(slot))?.unwrap_or(0);
        let Some(pos) = t.field_pos(slot)? else {
            return Ok(None);
        };
        match member {
            0 => Ok(None),
            m if is_member::<U>(m) => U::read_member(m, t.table(pos)?).map(Some),
            m => Err(DecodeError::UnknownVariant {
                ty: U::NAME,
                value: m.into(),
            }),
        }
    }
    fn absent(name: &'static str) -> Result<U, DecodeError> {
        Err(DecodeError::Missing(name))
    }
    fn fbs_type(schema: &mut Schema) -> String {
        U::describe(schema);
        U::NAME.to_string()
    }
}
