//! The typed AST of `#[derive(Message)]`.

use proc_macro2::{Ident, Span};
use syn::Type;

/// A struct deriving `Message`.
pub struct MessageDef {
    pub ident: Ident,
    pub table: String,
    pub fields: Vec<MessageField>,
}

pub struct MessageField {
    pub ident: Ident,
    pub ty: Type,
    pub id: u16,
    pub deprecated: bool,
    pub span: Span,
}
