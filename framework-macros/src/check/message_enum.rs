//! Checks of `#[derive(Message)]` on enums: fieldless enums (FlatBuffers enums)
//! and enums of tables (FlatBuffers unions). One function per rule.

use proc_macro2::Ident;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Expr, ExprLit, ExprUnary, Fields, Lit, Type, UnOp};

use super::message::{names_are_identifiers, schema_name};
use crate::ast::*;
use crate::ctxt::Ctxt;

/// A union's type is a `ubyte` whose 0 is NONE.
const MAX_MEMBERS: usize = 255;

pub(super) fn enumeration(
    cx: &Ctxt,
    input: &Input<'_>,
    variants: &[InputVariant<'_>],
) -> Option<MessageDef> {
    if !has_variants(cx, input.ident, variants) {
        return None;
    }
    names_are_identifiers(cx, input);
    let names = variant_names(variants);
    variant_names_are_unique(cx, variants, &names);
    match variant_shapes(cx, variants)? {
        Shape::Fieldless => fieldless(cx, input, variants, names).map(MessageDef::Enum),
        Shape::Union => union(cx, input, variants, names).map(MessageDef::Union),
    }
}

fn has_variants(cx: &Ctxt, ident: &Ident, variants: &[InputVariant<'_>]) -> bool {
    if variants.is_empty() {
        cx.error_spanned_by(
            ident,
            format!("`{ident}` has no variants: a FlatBuffers enum or union needs at least one"),
        );
    }
    !variants.is_empty()
}

fn variant_names(variants: &[InputVariant<'_>]) -> Vec<String> {
    variants
        .iter()
        .map(|v| match &v.name {
            Some(n) => n.value(),
            None => v.variant.ident.unraw().to_string(),
        })
        .collect()
}

/// The token a variant's schema name comes from.
fn name_token(v: &InputVariant<'_>) -> proc_macro2::TokenStream {
    match &v.name {
        Some(n) => n.to_token_stream(),
        None => v.variant.ident.to_token_stream(),
    }
}

fn variant_names_are_unique(cx: &Ctxt, variants: &[InputVariant<'_>], names: &[String]) {
    for (i, v) in variants.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|n| *n == names[i]) {
            cx.error_spanned_by(
                name_token(v),
                format!(
                    "`{}` is also the schema name of `{}`: rename one with #[fbs(name = \"...\")]",
                    names[i], variants[j].variant.ident
                ),
            );
        }
    }
}

enum Shape {
    /// Every variant a unit: a FlatBuffers enum.
    Fieldless,
    /// Every variant one unnamed field: a FlatBuffers union.
    Union,
}

fn variant_shapes(cx: &Ctxt, variants: &[InputVariant<'_>]) -> Option<Shape> {
    if variants
        .iter()
        .all(|v| matches!(v.variant.fields, Fields::Unit))
    {
        return Some(Shape::Fieldless);
    }
    let mut ok = true;
    for v in variants {
        let ident = &v.variant.ident;
        match &v.variant.fields {
            Fields::Unnamed(u) if u.unnamed.len() == 1 => {}
            Fields::Unit => {
                ok = false;
                cx.error_spanned_by(
                    ident,
                    format!("`{ident}` holds no table: in a union (an enum with payloads) every variant holds one #[derive(Message)] struct, e.g. `{ident}({ident})`; an enum of unit variants only is a FlatBuffers enum"),
                );
            }
            Fields::Unnamed(u) => {
                ok = false;
                cx.error_spanned_by(
                    u,
                    format!("a union variant holds exactly one #[derive(Message)] struct: `{ident}(Table)`"),
                );
            }
            Fields::Named(n) => {
                ok = false;
                cx.error_spanned_by(
                    n,
                    format!("a union variant holds one #[derive(Message)] struct as a tuple variant: `{ident}(Table)`, not named fields"),
                );
            }
        }
    }
    ok.then_some(Shape::Union)
}

// -------------------------------------------------------- fieldless enums

fn fieldless(
    cx: &Ctxt,
    input: &Input<'_>,
    variants: &[InputVariant<'_>],
    names: Vec<String>,
) -> Option<EnumDef> {
    let values = discriminants(cx, variants)?;
    let given = given_repr(cx, input)?;
    let repr = repr_holds_values(cx, input, variants, &values, given)?;
    Some(EnumDef {
        ident: input.ident.clone(),
        name: schema_name(input),
        repr,
        variants: variants
            .iter()
            .zip(names)
            .zip(values)
            .map(|((v, name), value)| EnumVariant {
                ident: v.variant.ident.clone(),
                name,
                value,
            })
            .collect(),
    })
}

/// An integer literal, possibly negated.
fn literal_value(expr: &Expr) -> Option<i128> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse().ok(),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => literal_value(expr).map(|v| -v),
        Expr::Group(g) => literal_value(&g.expr),
        Expr::Paren(p) => literal_value(&p.expr),
        _ => None,
    }
}

/// Each variant's value as rustc numbers them: its literal discriminant, else
/// one more than the previous (0 first). The schema needs the values, so a
/// discriminant must be a literal.
fn discriminants(cx: &Ctxt, variants: &[InputVariant<'_>]) -> Option<Vec<i128>> {
    let mut next = 0;
    let mut ok = true;
    let mut values = Vec::new();
    for v in variants {
        let value = match &v.variant.discriminant {
            Some((_, expr)) => match literal_value(expr) {
                Some(value) => value,
                None => {
                    ok = false;
                    cx.error_spanned_by(
                        expr,
                        "an enum's discriminant must be an integer literal: the schema needs its value",
                    );
                    next
                }
            },
            None => next,
        };
        values.push(value);
        next = value + 1;
    }
    ok.then_some(values)
}

fn repr_named(name: &str, of: impl Fn(Repr) -> &'static str) -> Option<Repr> {
    Repr::ALL.into_iter().find(|r| of(*r) == name)
}

/// The integer type the user chose, if any: `#[fbs(repr = "...")]` or
/// `#[repr(u8)]` and the like, which must agree.
fn given_repr(cx: &Ctxt, input: &Input<'_>) -> Option<Option<Repr>> {
    let rust = input
        .rust_repr
        .as_ref()
        .and_then(|r| repr_named(&r.to_string(), Repr::rust));
    let Some(lit) = &input.repr else {
        return Some(rust);
    };
    let Some(fbs) = repr_named(&lit.value(), Repr::fbs) else {
        let valid: Vec<&str> = Repr::ALL.iter().map(|r| r.fbs()).collect();
        cx.error_spanned_by(
            lit,
            format!(
                "`{}` is not a FlatBuffers enum type; valid: {}",
                lit.value(),
                valid.join(", ")
            ),
        );
        return None;
    };
    match (rust, &input.rust_repr) {
        (Some(rust), Some(ident)) if rust != fbs => {
            cx.error_spanned_by(
                lit,
                format!(
                    "`repr = \"{}\"` disagrees with #[repr({ident})], which is `{}` on the wire",
                    fbs.fbs(),
                    rust.fbs()
                ),
            );
            None
        }
        _ => Some(Some(fbs)),
    }
}

/// The chosen type must hold every value; without a choice, the smallest that
/// does is used.
fn repr_holds_values(
    cx: &Ctxt,
    input: &Input<'_>,
    variants: &[InputVariant<'_>],
    values: &[i128],
    given: Option<Repr>,
) -> Option<Repr> {
    let Some(repr) = given else {
        let fits = Repr::ALL
            .into_iter()
            .find(|r| values.iter().all(|v| r.holds(*v)));
        if fits.is_none() {
            cx.error_spanned_by(
                input.ident,
                "the values of this enum span more than a 64-bit integer holds",
            );
        }
        return fits;
    };
    let mut ok = true;
    for (v, value) in variants.iter().zip(values) {
        if !repr.holds(*value) {
            ok = false;
            let (lo, hi) = repr.range();
            let token = match &v.variant.discriminant {
                Some((_, expr)) => expr.to_token_stream(),
                None => v.variant.ident.to_token_stream(),
            };
            cx.error_spanned_by(
                token,
                format!(
                    "`{}` = {value} does not fit the enum's type `{}` ({lo}..={hi})",
                    v.variant.ident,
                    repr.fbs()
                ),
            );
        }
    }
    ok.then_some(repr)
}

// ------------------------------------------------------------------ unions

fn union(
    cx: &Ctxt,
    input: &Input<'_>,
    variants: &[InputVariant<'_>],
    names: Vec<String>,
) -> Option<UnionDef> {
    union_has_no_repr(cx, input);
    union_has_no_discriminants(cx, variants);
    union_members_are_tables(cx, variants);
    union_has_no_none(cx, variants, &names);
    union_fits_a_ubyte(cx, input.ident, variants);
    Some(UnionDef {
        ident: input.ident.clone(),
        name: schema_name(input),
        variants: variants
            .iter()
            .zip(names)
            .map(|(v, name)| UnionVariant {
                ident: v.variant.ident.clone(),
                name,
                ty: v
                    .variant
                    .fields
                    .iter()
                    .next()
                    .expect("one field")
                    .ty
                    .clone(),
            })
            .collect(),
    })
}

fn union_has_no_repr(cx: &Ctxt, input: &Input<'_>) {
    if let Some(lit) = &input.repr {
        cx.error_spanned_by(
            lit,
            "`repr` is for fieldless enums: a union's type is always `ubyte`",
        );
    }
}

fn union_has_no_discriminants(cx: &Ctxt, variants: &[InputVariant<'_>]) {
    for v in variants {
        if let Some((_, expr)) = &v.variant.discriminant {
            cx.error_spanned_by(
                expr,
                "union members are numbered 1.. in declaration order (0 is NONE): remove the discriminant",
            );
        }
    }
}

/// Payload types that are certainly no table, caught by syntax (any other type
/// must implement `Message`, which the expansion asserts at the type).
fn certainly_not_a_table(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| {
            matches!(
                s.ident.to_string().as_str(),
                "String"
                    | "str"
                    | "bool"
                    | "char"
                    | "u8"
                    | "i8"
                    | "u16"
                    | "i16"
                    | "u32"
                    | "i32"
                    | "u64"
                    | "i64"
                    | "u128"
                    | "i128"
                    | "usize"
                    | "isize"
                    | "f32"
                    | "f64"
                    | "Uuid"
                    | "Vec"
                    | "Option"
                    | "Box"
                    | "Rc"
                    | "Arc"
                    | "HashMap"
                    | "BTreeMap"
            )
        }),
        Type::Group(g) => certainly_not_a_table(&g.elem),
        Type::Paren(p) => certainly_not_a_table(&p.elem),
        _ => true,
    }
}

fn union_members_are_tables(cx: &Ctxt, variants: &[InputVariant<'_>]) {
    for v in variants {
        let ty = &v.variant.fields.iter().next().expect("one field").ty;
        if certainly_not_a_table(ty) {
            cx.error_spanned_by(
                ty,
                format!(
                    "union member `{}` must hold a #[derive(Message)] struct: FlatBuffers unions hold tables (flatc's Python code supports no strings, scalars, vectors or structs in unions); wrap the value in a struct",
                    v.variant.ident
                ),
            );
        }
    }
}

fn union_has_no_none(cx: &Ctxt, variants: &[InputVariant<'_>], names: &[String]) {
    for (v, name) in variants.iter().zip(names) {
        if name == "NONE" {
            cx.error_spanned_by(
                name_token(v),
                "`NONE` is the name of a union's absent value: rename the member with #[fbs(name = \"...\")]",
            );
        }
    }
}

fn union_fits_a_ubyte(cx: &Ctxt, ident: &Ident, variants: &[InputVariant<'_>]) {
    if variants.len() > MAX_MEMBERS {
        cx.error_spanned_by(
            ident,
            format!(
                "a union has at most {MAX_MEMBERS} members (its type is a `ubyte`, 0 is NONE); `{ident}` has {}",
                variants.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::message::message;
    use crate::check::message::tests::errors;

    /// `repr(i128)` (stable since Rust 1.89) lets rustc accept values no 64-bit
    /// type holds.
    #[test]
    fn values_beyond_64_bits_are_an_error() {
        let e = errors("#[repr(i128)] enum E { A = -1, B = 18446744073709551615 }");
        assert!(
            e.contains("the values of this enum span more than a 64-bit integer holds"),
            "{e}"
        );
        assert_eq!(errors("enum E { A = -1, B = 9223372036854775807 }"), "");
    }

    #[test]
    fn the_smallest_type_holding_every_value_is_picked() {
        let repr = |item: &str| {
            let input: syn::DeriveInput = syn::parse_str(item).unwrap();
            let cx = Ctxt::new();
            let def = message(&cx, &input);
            cx.check().unwrap();
            match def {
                Some(MessageDef::Enum(e)) => e.repr,
                _ => panic!("not an enum"),
            }
        };
        assert_eq!(repr("enum E { A, B = 255 }"), Repr::UByte);
        assert_eq!(repr("enum E { A = -128, B = 127 }"), Repr::Byte);
        assert_eq!(repr("enum E { A, B = 256 }"), Repr::UShort);
        assert_eq!(repr("enum E { A = -1, B = 128 }"), Repr::Short);
        assert_eq!(repr("enum E { A, B = 65536 }"), Repr::UInt);
        assert_eq!(repr("enum E { A = -1, B = 32768 }"), Repr::Int);
        assert_eq!(repr("enum E { A, B = 4294967296 }"), Repr::ULong);
        assert_eq!(repr("enum E { A = -1, B = 2147483648 }"), Repr::Long);
        // Chosen by the user, wider than needed.
        assert_eq!(repr("#[fbs(repr = \"int\")] enum E { A }"), Repr::Int);
        assert_eq!(repr("#[repr(i16)] enum E { A }"), Repr::Short);
        // `repr(C)` and `usize` say nothing about the wire.
        assert_eq!(repr("#[repr(C)] enum E { A = 300 }"), Repr::UShort);
        assert_eq!(repr("#[repr(usize)] enum E { A }"), Repr::UByte);
    }
}
