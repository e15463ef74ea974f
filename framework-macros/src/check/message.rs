//! Checks of `#[derive(Message)]`.

use std::collections::HashMap;

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, ExprLit, Fields, Lit, Type};

use super::int_literal;
use crate::ast::*;
use crate::ctxt::Ctxt;
use crate::parse::{metas, Meta};

/// Field types that can never be message fields, caught by syntax with a clear
/// message; any other path is checked by the `Field` trait.
fn unsupported_type(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Reference(_) => {
            Some("references are not supported: use an owned type (`String`, `Vec<u8>`)")
        }
        Type::Tuple(_) => Some("tuples are not supported: use a nested #[derive(Message)] struct"),
        Type::Array(_) | Type::Slice(_) => Some("arrays are not supported: use `Vec<_>`"),
        Type::Path(p) => {
            let last_segment = p.path.segments.last()?;
            let last = last_segment.ident.to_string();
            if last == "Option" {
                if let syn::PathArguments::AngleBracketed(a) = &last_segment.arguments {
                    if let Some(syn::GenericArgument::Type(Type::Path(inner))) = a.args.first() {
                        if inner
                            .path
                            .segments
                            .last()
                            .is_some_and(|s| s.ident == "Option")
                        {
                            return Some("`Option<Option<_>>` cannot round-trip: a table field is present or absent, one level of `Option`");
                        }
                    }
                }
            }
            match last.as_str() {
                "usize" | "isize" => Some("`usize`/`isize` have no fixed size on the wire: use `u32`/`u64` or `i32`/`i64`"),
                "u128" | "i128" => Some("128-bit integers are not supported by FlatBuffers: use `Uuid` or two `u64`"),
                "char" => Some("`char` is not supported: use `u32` or `String`"),
                "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" => {
                    Some("maps and sets are not supported: use `Vec` of a nested message")
                }
                "Box" | "Rc" | "Arc" | "Cow" => Some("smart pointers are not supported: use the value type"),
                _ => None,
            }
        }
        _ => Some("unsupported field type"),
    }
}

fn fbs_attrs(cx: &Ctxt, attrs: &[syn::Attribute]) -> Vec<Meta> {
    let mut out = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("fbs")) {
        match a.meta.require_list().and_then(|l| metas(l.tokens.clone())) {
            Ok(list) => out.extend(list),
            Err(e) => cx.syn_error(e),
        }
    }
    out
}

/// `#[derive(Message)]` input.
pub fn message(cx: &Ctxt, input: &DeriveInput) -> Option<MessageDef> {
    let data = match &input.data {
        Data::Struct(s) => s,
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "#[derive(Message)] supports structs with named fields, not enums (a FlatBuffers table is a struct)",
            );
            return None;
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[derive(Message)] supports structs with named fields, not unions",
            );
            return None;
        }
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(Message)] does not support generic structs: a table has one schema",
        );
    }
    let mut table = input.ident.to_string();
    for m in fbs_attrs(cx, &input.attrs) {
        match (m.key.to_string().as_str(), &m.value) {
            (
                "name",
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })),
            ) => table = s.value(),
            ("name", _) => {
                cx.error_spanned_by(&m.key, "`name` takes a string: #[fbs(name = \"Table\")]")
            }
            (k, _) => cx.error_spanned_by(
                &m.key,
                format!("unknown key `{k}` for #[fbs] on a struct; valid keys: name"),
            ),
        }
    }
    let named = match &data.fields {
        Fields::Named(n) => n,
        other => {
            cx.error_spanned_by(
                other,
                "#[derive(Message)] needs named fields: `struct T { a: u32 }`",
            );
            return None;
        }
    };
    let mut fields = Vec::new();
    let mut next_id: u32 = 0;
    let mut ids: HashMap<u32, syn::Ident> = HashMap::new();
    for f in &named.named {
        let ident = f.ident.clone().expect("named field");
        if let Some(why) = unsupported_type(&f.ty) {
            cx.error_spanned_by(&f.ty, format!("field `{ident}`: {why}"));
        }
        let mut id = next_id;
        let mut deprecated = false;
        for m in fbs_attrs(cx, &f.attrs) {
            match (m.key.to_string().as_str(), &m.value) {
                ("id", Some(v)) => match int_literal(v).map(|l| l.base10_parse::<u32>()) {
                    Some(Ok(n)) if n < 32_000 => id = n,
                    _ => cx.error_spanned_by(
                        v,
                        "`id` takes a field id (integer literal), e.g. #[fbs(id = 3)]",
                    ),
                },
                ("deprecated", None) => deprecated = true,
                ("id", None) => cx.error_spanned_by(&m.key, "`id` needs a value: #[fbs(id = 3)]"),
                ("deprecated", Some(v)) => {
                    cx.error_spanned_by(v, "`deprecated` takes no value: #[fbs(deprecated)]")
                }
                (k, _) => cx.error_spanned_by(
                    &m.key,
                    format!("unknown key `{k}` for #[fbs] on a field; valid keys: id, deprecated"),
                ),
            }
        }
        if let Some(prev) = ids.insert(id, ident.clone()) {
            cx.error_spanned_by(&ident, format!("field id {id} is already used by `{prev}`"));
        }
        next_id = id + 1;
        fields.push(MessageField {
            span: f.ty.span(),
            ident,
            ty: f.ty.clone(),
            id: id as u16,
            deprecated,
        });
    }
    // flatc requires explicit ids to be exactly 0..n-1.
    let n = fields.len() as u32;
    for f in &fields {
        if u32::from(f.id) >= n {
            cx.error_spanned_by(
                &f.ident,
                format!(
                    "field ids must be 0..{n} (one per field, as flatc requires); `{}` has id {}",
                    f.ident, f.id
                ),
            );
        }
    }
    Some(MessageDef {
        ident: input.ident.clone(),
        table,
        fields,
    })
}
