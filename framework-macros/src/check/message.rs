//! Checks of `#[derive(Message)]`: one function per rule, called in order by
//! `message` and `table` here, `enumeration`, `fieldless` and `union` in
//! `message_enum.rs`. Each reports into the collector at the user's token; the
//! checked AST is built only from valid input.

use std::collections::HashMap;

use proc_macro2::Ident;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Fields, Type};

use super::message_enum::enumeration;
use crate::ast::*;
use crate::ctxt::Ctxt;
use crate::parse::message::input;

/// Field ids stop below this: a field's vtable slot (4 + 2 * id) is a `u16`.
const MAX_ID: u32 = 32_000;

/// `#[derive(Message)]` input.
pub fn message(cx: &Ctxt, derive: &syn::DeriveInput) -> Option<MessageDef> {
    let input = input(cx, derive);
    not_generic(cx, &input);
    match &input.data {
        InputData::Struct { shape, fields } => table(cx, &input, shape, fields),
        InputData::Enum { variants } => enumeration(cx, &input, variants),
        InputData::Union { token } => {
            not_a_rust_union(cx, token);
            None
        }
    }
}

// ------------------------------------------------------------- every kind

fn not_generic(cx: &Ctxt, input: &Input<'_>) {
    if !input.generics.params.is_empty() {
        let what = match input.data {
            InputData::Enum { .. } => "generic enums: an enum has one schema",
            _ => "generic structs: a table has one schema",
        };
        cx.error_spanned_by(
            input.generics,
            format!("#[derive(Message)] does not support {what}"),
        );
    }
}

fn not_a_rust_union(cx: &Ctxt, token: &syn::token::Union) {
    cx.error_spanned_by(
        token,
        "#[derive(Message)] supports structs (FlatBuffers tables) and enums (FlatBuffers enums and unions), not Rust unions",
    );
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `#[fbs(name = "...")]` must be a name flatc accepts.
pub(super) fn names_are_identifiers(cx: &Ctxt, input: &Input<'_>) {
    let variants = match &input.data {
        InputData::Enum { variants } => variants.iter().filter_map(|v| v.name.as_ref()).collect(),
        _ => Vec::new(),
    };
    for name in input.name.iter().chain(variants) {
        if !is_identifier(&name.value()) {
            cx.error_spanned_by(
                name,
                "a schema name is a FlatBuffers identifier: ASCII letters, digits and `_`, not starting with a digit",
            );
        }
    }
}

/// The name in the schema: `#[fbs(name)]`, else the Rust name.
pub(super) fn schema_name(input: &Input<'_>) -> String {
    match &input.name {
        Some(n) => n.value(),
        None => input.ident.unraw().to_string(),
    }
}

// ------------------------------------------------------------------ structs

fn table(
    cx: &Ctxt,
    input: &Input<'_>,
    shape: &syn::Fields,
    fields: &[InputField<'_>],
) -> Option<MessageDef> {
    if !named_fields(cx, shape, input.ident) {
        return None;
    }
    names_are_identifiers(cx, input);
    for f in fields {
        supported_field_type(cx, f);
        field_id_is_valid(cx, f);
    }
    let ids = assign_ids(fields);
    union_ids_leave_room(cx, fields, &ids);
    field_ids_are_unique(cx, fields, &ids);
    field_ids_are_in_range(cx, fields, &ids);
    Some(MessageDef::Table(TableDef {
        ident: input.ident.clone(),
        table: schema_name(input),
        fields: fields
            .iter()
            .zip(&ids)
            .map(|(f, id)| MessageField {
                ident: field_ident(f).clone(),
                ty: f.field.ty.clone(),
                id: id.value as u16,
                deprecated: f.deprecated,
                union: f.union.is_some(),
                span: f.field.ty.span(),
            })
            .collect(),
    }))
}

fn field_ident<'a>(f: &InputField<'a>) -> &'a Ident {
    f.field.ident.as_ref().expect("named field")
}

fn named_fields(cx: &Ctxt, shape: &Fields, ident: &Ident) -> bool {
    let message = "#[derive(Message)] needs named fields: `struct T { a: u32 }`";
    match shape {
        Fields::Named(_) => true,
        Fields::Unnamed(u) => {
            cx.error_spanned_by(u, message);
            false
        }
        Fields::Unit => {
            cx.error_spanned_by(ident, message);
            false
        }
    }
}

/// Field types that can never be message fields, caught by syntax with a clear
/// message; any other path is checked by the `Field` trait.
fn unsupported_type(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Reference(_) => {
            Some("references are not supported: use an owned type (`String`, `Vec<u8>`)")
        }
        Type::Tuple(_) => Some("tuples are not supported: use a nested #[derive(Message)] struct"),
        Type::Array(_) | Type::Slice(_) => Some("arrays are not supported: use `Vec<_>`"),
        Type::Group(g) => unsupported_type(&g.elem),
        Type::Paren(p) => unsupported_type(&p.elem),
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

fn supported_field_type(cx: &Ctxt, f: &InputField<'_>) {
    if let Some(why) = unsupported_type(&f.field.ty) {
        cx.error_spanned_by(&f.field.ty, format!("field `{}`: {why}", field_ident(f)));
    }
}

/// The value of `#[fbs(id = N)]`, if it is a valid id.
fn explicit_id(f: &InputField<'_>) -> Option<u32> {
    let n = f.id.as_ref()?.base10_parse::<u32>().ok()?;
    (n < MAX_ID).then_some(n)
}

fn field_id_is_valid(cx: &Ctxt, f: &InputField<'_>) {
    if let (Some(lit), None) = (&f.id, explicit_id(f)) {
        cx.error_spanned_by(
            lit,
            format!("a field id is 0..{MAX_ID} (a vtable slot is 16 bits)"),
        );
    }
}

/// Where a field's ids are: its value's id, and how many ids it takes (2 for a
/// union: its type's is the one before, as flatc lays it out).
struct Ids {
    value: u32,
    width: u32,
    /// The field whose `#[fbs(id)]` this id follows from (itself when pinned).
    source: Option<usize>,
}

impl Ids {
    /// The ids the field occupies, type first.
    fn occupied(&self) -> std::ops::RangeInclusive<u32> {
        self.value.saturating_sub(self.width - 1)..=self.value
    }
}

/// Declaration order, as flatc numbers fields without ids: each field takes the
/// next id (a union the next two), or its `#[fbs(id)]`, after which numbering
/// goes on.
fn assign_ids(fields: &[InputField<'_>]) -> Vec<Ids> {
    let mut next = 0;
    let mut source = None;
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let width = if f.union.is_some() { 2 } else { 1 };
            let value = match explicit_id(f) {
                Some(n) => {
                    source = Some(i);
                    n
                }
                None => next + width - 1,
            };
            next = value + 1;
            Ids {
                value,
                width,
                source,
            }
        })
        .collect()
}

fn union_ids_leave_room(cx: &Ctxt, fields: &[InputField<'_>], ids: &[Ids]) {
    for (f, id) in fields.iter().zip(ids) {
        if let (Some(lit), true, 0) = (&f.id, f.union.is_some(), id.value) {
            cx.error_spanned_by(
                lit,
                format!(
                    "union field `{}` takes two ids, its type's at id - 1 and its value's at id (as flatc lays it out): id 0 leaves no room for the type; use 1 or above",
                    field_ident(f)
                ),
            );
        }
    }
}

/// Who holds `id` among `fields`: "`a`" or "the type of union `shape`".
fn holder(f: &InputField<'_>, ids: &Ids, id: u32) -> String {
    if id == ids.value {
        format!("`{}`", field_ident(f))
    } else {
        format!("the type of union `{}`", field_ident(f))
    }
}

/// The user's token for field `i`'s id: its `#[fbs(id)]`, else its name.
fn id_token(f: &InputField<'_>) -> proc_macro2::TokenStream {
    match &f.id {
        Some(lit) => lit.to_token_stream(),
        None => field_ident(f).to_token_stream(),
    }
}

fn field_ids_are_unique(cx: &Ctxt, fields: &[InputField<'_>], ids: &[Ids]) {
    let mut taken: HashMap<u32, usize> = HashMap::new();
    for (i, (f, id)) in fields.iter().zip(ids).enumerate() {
        let clash = id.occupied().find_map(|n| taken.get(&n).map(|&j| (n, j)));
        if let Some((n, j)) = clash {
            let mut message = format!(
                "field id {n} is already used by {}",
                holder(&fields[j], &ids[j], n)
            );
            if n != id.value {
                message = format!(
                    "union `{}` puts its type at id {n}, already used by {}",
                    field_ident(f),
                    holder(&fields[j], &ids[j], n)
                );
            }
            if f.id.is_none() && i > 0 {
                message.push_str(&format!(
                    " (`{}` takes the id after `{}`'s)",
                    field_ident(f),
                    field_ident(&fields[i - 1])
                ));
            }
            cx.error_spanned_by(id_token(f), message);
            continue;
        }
        for n in id.occupied() {
            taken.insert(n, i);
        }
    }
}

/// flatc requires the ids of n fields (a union counting two) to be exactly
/// 0..n. With unique ids that holds when none is n or above; an id out of range
/// is blamed on the `#[fbs(id)]` it follows from.
fn field_ids_are_in_range(cx: &Ctxt, fields: &[InputField<'_>], ids: &[Ids]) {
    let n: u32 = ids.iter().map(|id| id.width).sum();
    let per_union = if ids.iter().any(|id| id.width == 2) {
        ", two per union"
    } else {
        ""
    };
    let rule = format!("field ids must be 0..{n} (one per field{per_union}, as flatc requires)");
    let mut by_source: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if id.value < n {
            continue;
        }
        match id.source {
            Some(s) => match by_source.iter_mut().find(|(source, _)| *source == s) {
                Some((_, out)) => out.push(i),
                None => by_source.push((s, vec![i])),
            },
            // Numbering from 0 without a pinned id never passes n.
            None => cx.error_spanned_by(
                field_ident(&fields[i]),
                format!("{rule}; `{}` has id {}", field_ident(&fields[i]), id.value),
            ),
        }
    }
    for (s, out) in by_source {
        let source = field_ident(&fields[s]);
        let followers: Vec<String> = out
            .iter()
            .filter(|&&i| i != s)
            .enumerate()
            .map(|(k, &i)| {
                let gets = if k == 0 { " gets" } else { "" };
                format!("`{}`{gets} id {}", field_ident(&fields[i]), ids[i].value)
            })
            .collect();
        let followers = match followers.split_last() {
            None => String::new(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        };
        let pinned = ids[s].value;
        let message = match (out.contains(&s), followers.is_empty()) {
            (true, true) => format!("{rule}; `{source}` has id {pinned}"),
            (true, false) => format!("{rule}; `{source}` has id {pinned}, so {followers}"),
            (false, _) => format!("{rule}; after `{source}`'s id {pinned}, {followers}"),
        };
        cx.error_spanned_by(id_token(&fields[s]), message);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The errors `message` reports for `item`, as text (empty: none).
    pub(in crate::check) fn errors(item: &str) -> String {
        let input: syn::DeriveInput = syn::parse_str(item).unwrap();
        let cx = Ctxt::new();
        let def = message(&cx, &input);
        match cx.check() {
            Ok(()) => {
                assert!(def.is_some(), "no errors and no definition for {item}");
                String::new()
            }
            Err(e) => e.to_string(),
        }
    }

    fn table(item: &str) -> TableDef {
        let input: syn::DeriveInput = syn::parse_str(item).unwrap();
        let cx = Ctxt::new();
        let def = message(&cx, &input);
        cx.check().unwrap_or_else(|e| panic!("{e}"));
        match def {
            Some(MessageDef::Table(t)) => t,
            _ => panic!("not a table: {item}"),
        }
    }

    /// What flatc assigns without ids: each field the next id, a union two (its
    /// type's first).
    #[test]
    fn union_fields_take_two_ids_in_declaration_order() {
        let t = table(
            "struct S { a: u32, #[fbs(union)] u: U, b: u32, #[fbs(union)] v: Option<U>, c: u8 }",
        );
        let ids: Vec<(String, u16)> = t
            .fields
            .iter()
            .map(|f| (f.ident.to_string(), f.id))
            .collect();
        let expected = [("a", 0), ("u", 2), ("b", 3), ("v", 5), ("c", 6)];
        assert_eq!(
            ids,
            expected
                .iter()
                .map(|(n, i)| (n.to_string(), *i))
                .collect::<Vec<_>>()
        );
        // Pinned: the union's id is its value's, numbering goes on after it.
        let t = table(
            "struct S { #[fbs(id = 3)] c: u8, #[fbs(union, id = 2)] u: U, #[fbs(id = 0)] a: u32 }",
        );
        let ids: Vec<u16> = t.fields.iter().map(|f| f.id).collect();
        assert_eq!(ids, [3, 2, 0]);
        let e = errors("struct S { #[fbs(union, id = 2)] u: U, a: u32 }");
        assert!(
            e.contains("field ids must be 0..3 (one per field, two per union, as flatc requires); after `u`'s id 2, `a` gets id 3"),
            "{e}"
        );
        let e = errors("struct S { #[fbs(id = 3)] c: u8, #[fbs(union, id = 2)] u: U, a: u32 }");
        assert!(
            e.contains("field id 3 is already used by `c` (`a` takes the id after `u`'s)"),
            "{e}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            "#[fbs(name = \"x y\")] struct S { #[fbs(id = 9)] a: usize, #[fbs(idd)] b: u32 }",
        );
        for part in [
            "a schema name is a FlatBuffers identifier",
            "`usize`/`isize` have no fixed size",
            "unknown key `idd`",
            "field ids must be 0..2",
        ] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
    }
}
