//! Parsing: attribute arguments into key/value lists, items into syn types.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

/// Which handler macro is expanding.
#[derive(Clone, Copy)]
pub enum Target {
    Opcode,
    Override,
}

/// `key` or `key = value`.
pub struct Meta {
    pub key: Ident,
    pub value: Option<Expr>,
}

impl Parse for Meta {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Meta { key, value })
    }
}

/// `a = 1, b = 2, flag`.
pub fn metas(args: TokenStream) -> syn::Result<Vec<Meta>> {
    let list = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    Ok(list.into_iter().collect())
}

pub mod message;
