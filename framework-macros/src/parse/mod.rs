//! Parsing: every macro's arguments into typed attribute structs (`syn::Parse`
//! impls), items into syn types. No rule is checked here beyond syntax.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Token};

/// Which handler macro is expanding.
#[derive(Clone, Copy)]
pub enum Target {
    Opcode,
    Override,
}

/// Which hook macro is expanding.
#[derive(Clone, Copy)]
pub enum Hook {
    Connect,
    Disconnect,
    Authorize,
}

/// `#[opcode(N)]` or `#[opcode(N, key = value, ..)]`: the opcode expression
/// (absent when none was given) and the options after it.
pub struct OpcodeAttr {
    pub value: Option<Expr>,
    /// The whole argument list, for errors about it.
    pub span: Span,
    pub options: Vec<Meta>,
}

impl Parse for OpcodeAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let span = input.span();
        if input.is_empty() {
            return Ok(OpcodeAttr {
                value: None,
                span,
                options: Vec::new(),
            });
        }
        let value: Expr = input.parse()?;
        let mut options = Vec::new();
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            let rest = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
            options.extend(rest);
        }
        Ok(OpcodeAttr {
            span: value.span(),
            value: Some(value),
            options,
        })
    }
}

/// `#[override_opcode(Name)]`: one identifier, or what was given instead.
pub enum OverrideAttr {
    Name(Ident),
    Malformed(TokenStream),
}

impl Parse for OverrideAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let tokens: TokenStream = input.parse()?;
        Ok(match syn::parse2::<Ident>(tokens.clone()) {
            Ok(name) => OverrideAttr::Name(name),
            Err(_) => OverrideAttr::Malformed(tokens),
        })
    }
}

/// `key = value, ...` (`#[raw_ws(...)]`, `main!(...)`).
pub struct KeyValues {
    pub metas: Vec<Meta>,
    /// The whole argument list (empty lists point at the item instead).
    pub tokens: TokenStream,
}

impl Parse for KeyValues {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let tokens: TokenStream = input.fork().parse()?;
        let list = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        Ok(KeyValues {
            metas: list.into_iter().collect(),
            tokens,
        })
    }
}

/// `#[on_connect]`, `#[on_disconnect]`, `#[authorize]`: no arguments.
pub struct NoArgs;

impl Parse for NoArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            Ok(NoArgs)
        } else {
            Err(input.error("this attribute takes no arguments"))
        }
    }
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

pub mod message;
