//! The typed AST of `#[derive(Message)]`: what `parse` reads ([`Input`]), and
//! what `check` builds from valid input for `expand` ([`MessageDef`]).

use proc_macro2::{Ident, Span};
use syn::{LitInt, LitStr, Type};

use crate::parse::message::kw;

/// The derive's input, `#[fbs]` attributes typed.
pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a syn::Generics,
    /// `#[fbs(name = "...")]`.
    pub name: Option<LitStr>,
    /// `#[fbs(repr = "...")]` (enums).
    pub repr: Option<LitStr>,
    /// `#[repr(u8)]` and the like.
    pub rust_repr: Option<Ident>,
    pub data: InputData<'a>,
}

pub enum InputData<'a> {
    Struct {
        shape: &'a syn::Fields,
        fields: Vec<InputField<'a>>,
    },
    Enum {
        variants: Vec<InputVariant<'a>>,
    },
    Union {
        token: syn::token::Union,
    },
}

pub struct InputField<'a> {
    pub field: &'a syn::Field,
    /// `#[fbs(id = N)]`.
    pub id: Option<LitInt>,
    /// `#[fbs(deprecated)]`.
    pub deprecated: bool,
    /// `#[fbs(union)]`.
    pub union: Option<kw::union>,
}

pub struct InputVariant<'a> {
    pub variant: &'a syn::Variant,
    /// `#[fbs(name = "...")]`.
    pub name: Option<LitStr>,
}

/// A checked `#[derive(Message)]`.
pub enum MessageDef {
    Table(TableDef),
    Enum(EnumDef),
    Union(UnionDef),
}

/// A struct: a FlatBuffers table.
pub struct TableDef {
    pub ident: Ident,
    pub table: String,
    pub fields: Vec<MessageField>,
}

pub struct MessageField {
    pub ident: Ident,
    pub ty: Type,
    /// The field's id (a union's value id; its type's is `id - 1`).
    pub id: u16,
    pub deprecated: bool,
    pub union: bool,
    /// The type's span: where errors about the type point.
    pub span: Span,
}

/// A fieldless enum: a FlatBuffers enum.
pub struct EnumDef {
    pub ident: Ident,
    pub name: String,
    pub repr: Repr,
    pub variants: Vec<EnumVariant>,
}

pub struct EnumVariant {
    pub ident: Ident,
    pub name: String,
    pub value: i128,
}

/// The integer type a FlatBuffers enum is stored as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Repr {
    UByte,
    Byte,
    UShort,
    Short,
    UInt,
    Int,
    ULong,
    Long,
}

impl Repr {
    /// Smallest first, unsigned before signed: the order the derive picks in.
    pub const ALL: [Repr; 8] = [
        Repr::UByte,
        Repr::Byte,
        Repr::UShort,
        Repr::Short,
        Repr::UInt,
        Repr::Int,
        Repr::ULong,
        Repr::Long,
    ];

    pub fn fbs(self) -> &'static str {
        match self {
            Repr::UByte => "ubyte",
            Repr::Byte => "byte",
            Repr::UShort => "ushort",
            Repr::Short => "short",
            Repr::UInt => "uint",
            Repr::Int => "int",
            Repr::ULong => "ulong",
            Repr::Long => "long",
        }
    }

    pub fn rust(self) -> &'static str {
        match self {
            Repr::UByte => "u8",
            Repr::Byte => "i8",
            Repr::UShort => "u16",
            Repr::Short => "i16",
            Repr::UInt => "u32",
            Repr::Int => "i32",
            Repr::ULong => "u64",
            Repr::Long => "i64",
        }
    }

    pub fn range(self) -> (i128, i128) {
        match self {
            Repr::UByte => (0, u8::MAX.into()),
            Repr::Byte => (i8::MIN.into(), i8::MAX.into()),
            Repr::UShort => (0, u16::MAX.into()),
            Repr::Short => (i16::MIN.into(), i16::MAX.into()),
            Repr::UInt => (0, u32::MAX.into()),
            Repr::Int => (i32::MIN.into(), i32::MAX.into()),
            Repr::ULong => (0, u64::MAX.into()),
            Repr::Long => (i64::MIN.into(), i64::MAX.into()),
        }
    }

    pub fn holds(self, value: i128) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&value)
    }
}

/// An enum whose variants each hold one table: a FlatBuffers union.
pub struct UnionDef {
    pub ident: Ident,
    pub name: String,
    pub variants: Vec<UnionVariant>,
}

pub struct UnionVariant {
    pub ident: Ident,
    /// The member's name in the union.
    pub name: String,
    pub ty: Type,
}
