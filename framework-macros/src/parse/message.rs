//! Parsing of `#[derive(Message)]`'s input: the `#[fbs(...)]` attributes into
//! typed keys, each place (struct, field, enum, variant) accepting its own keys.
//! A key given twice and an unknown key (the error lists the valid ones) are
//! errors here; what the values mean is checked in `check::message`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Expr, ExprLit, Lit, LitInt, LitStr, Token};

use crate::ast::{Input, InputData, InputField, InputVariant};
use crate::ctxt::Ctxt;

/// The keys of `#[fbs(...)]`.
pub mod kw {
    syn::custom_keyword!(id);
    syn::custom_keyword!(name);
    syn::custom_keyword!(deprecated);
    syn::custom_keyword!(repr);
    syn::custom_keyword!(union);
}

/// One `#[fbs(...)]` key with its value.
pub enum FbsAttr {
    /// `id = 3`: the field's id (a union field's value id; its type's is id - 1).
    Id(kw::id, LitInt),
    /// `name = "Name"`: the name in the schema.
    Name(kw::name, LitStr),
    /// `deprecated`: the field's id stays reserved, the field is never sent.
    Deprecated(kw::deprecated),
    /// `repr = "ubyte"`: a fieldless enum's integer type.
    Repr(kw::repr, LitStr),
    /// `union`: the field is a union (two ids: its type's and its value's).
    Union(kw::union),
}

impl FbsAttr {
    fn key(&self) -> (&'static str, Span) {
        match self {
            FbsAttr::Id(k, _) => ("id", k.span),
            FbsAttr::Name(k, _) => ("name", k.span),
            FbsAttr::Deprecated(k) => ("deprecated", k.span),
            FbsAttr::Repr(k, _) => ("repr", k.span),
            FbsAttr::Union(k) => ("union", k.span),
        }
    }
}

/// Where an `#[fbs]` attribute is, and the keys it takes there.
pub trait Place {
    /// "a struct", "a field", ...
    const WHAT: &'static str;
    const KEYS: &'static [&'static str];
    /// The example in the error for a `name` that is not a string.
    const NAME_EXAMPLE: &'static str = "Name";
}

pub struct OnStruct;
pub struct OnField;
pub struct OnEnum;
pub struct OnVariant;

impl Place for OnStruct {
    const WHAT: &'static str = "a struct";
    const KEYS: &'static [&'static str] = &["name"];
    const NAME_EXAMPLE: &'static str = "Table";
}
impl Place for OnField {
    const WHAT: &'static str = "a field";
    const KEYS: &'static [&'static str] = &["id", "deprecated", "union"];
}
impl Place for OnEnum {
    const WHAT: &'static str = "an enum";
    const KEYS: &'static [&'static str] = &["name", "repr"];
}
impl Place for OnVariant {
    const WHAT: &'static str = "a variant";
    const KEYS: &'static [&'static str] = &["name"];
}

/// `key` or `key = value`, before its key is known to be valid.
struct RawMeta {
    key: syn::Ident,
    value: Option<Expr>,
}

impl Parse for RawMeta {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = syn::Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(RawMeta { key, value })
    }
}

/// The keys of one `#[fbs(...)]` at place `P`: the valid ones, and the errors of
/// the others (all of them, not just the first).
pub struct FbsAttrs<P> {
    pub attrs: Vec<FbsAttr>,
    pub errors: Option<syn::Error>,
    place: std::marker::PhantomData<P>,
}

impl<P: Place> Parse for FbsAttrs<P> {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let metas = Punctuated::<RawMeta, Token![,]>::parse_terminated(input)?;
        let mut out = FbsAttrs {
            attrs: Vec::new(),
            errors: None,
            place: std::marker::PhantomData,
        };
        for m in metas {
            match typed::<P>(m) {
                Ok(a) => out.attrs.push(a),
                Err(e) => match &mut out.errors {
                    Some(all) => all.combine(e),
                    None => out.errors = Some(e),
                },
            }
        }
        Ok(out)
    }
}

fn string(value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        Expr::Group(g) => string(&g.expr),
        _ => None,
    }
}

fn integer(value: &Expr) -> Option<LitInt> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i.clone()),
        Expr::Group(g) => integer(&g.expr),
        _ => None,
    }
}

/// The typed key of `m`, if `m` is a valid key at `P` with the right value.
fn typed<P: Place>(m: RawMeta) -> syn::Result<FbsAttr> {
    let key = m.key.unraw().to_string();
    if !P::KEYS.contains(&key.as_str()) {
        return Err(syn::Error::new(
            m.key.span(),
            format!(
                "unknown key `{key}` for #[fbs] on {}; valid keys: {}",
                P::WHAT,
                P::KEYS.join(", ")
            ),
        ));
    }
    let span = m.key.span();
    let needs_value = |example: &str| {
        syn::Error::new(
            span,
            format!("`{key}` needs a value: #[fbs({key} = {example})]"),
        )
    };
    let no_value =
        |v: &Expr| syn::Error::new(v.span(), format!("`{key}` takes no value: #[fbs({key})]"));
    match key.as_str() {
        "id" => {
            let v = m.value.ok_or_else(|| needs_value("3"))?;
            let lit = integer(&v).ok_or_else(|| {
                syn::Error::new(
                    v.span(),
                    "`id` takes a field id (integer literal), e.g. #[fbs(id = 3)]",
                )
            })?;
            Ok(FbsAttr::Id(kw::id(span), lit))
        }
        "name" => {
            let example = format!("\"{}\"", P::NAME_EXAMPLE);
            let v = m.value.ok_or_else(|| needs_value(&example))?;
            let lit = string(&v).ok_or_else(|| {
                syn::Error::new(
                    v.span(),
                    format!("`name` takes a string: #[fbs(name = {example})]"),
                )
            })?;
            Ok(FbsAttr::Name(kw::name(span), lit))
        }
        "repr" => {
            let v = m.value.ok_or_else(|| needs_value("\"ubyte\""))?;
            let lit = string(&v).ok_or_else(|| {
                syn::Error::new(
                    v.span(),
                    "`repr` takes the enum's FlatBuffers type as a string: #[fbs(repr = \"ubyte\")]",
                )
            })?;
            Ok(FbsAttr::Repr(kw::repr(span), lit))
        }
        "deprecated" => match &m.value {
            Some(v) => Err(no_value(v)),
            None => Ok(FbsAttr::Deprecated(kw::deprecated(span))),
        },
        "union" => match &m.value {
            Some(v) => Err(no_value(v)),
            None => Ok(FbsAttr::Union(kw::union(span))),
        },
        _ => unreachable!("every key in Place::KEYS is parsed"),
    }
}

/// Every `#[fbs(...)]` key in `attrs` at place `P`; errors go to `cx`, the valid
/// keys are still returned (so one bad key causes no follow-on errors).
pub fn fbs_attrs<P: Place>(cx: &Ctxt, attrs: &[Attribute]) -> Vec<FbsAttr> {
    let mut out: Vec<FbsAttr> = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("fbs")) {
        let parsed = a
            .meta
            .require_list()
            .and_then(|l| FbsAttrs::<P>::parse.parse2(l.tokens.clone()));
        match parsed {
            Ok(list) => {
                if let Some(e) = list.errors {
                    cx.syn_error(e);
                }
                for attr in list.attrs {
                    let (key, span) = attr.key();
                    if out.iter().any(|seen| seen.key().0 == key) {
                        cx.syn_error(syn::Error::new(span, format!("`{key}` is given twice")));
                    } else {
                        out.push(attr);
                    }
                }
            }
            Err(e) => cx.syn_error(e),
        }
    }
    out
}

/// The integer type of `#[repr(u8)]` and the like, if any (other reprs, such as
/// `C` or `usize`, say nothing about the wire).
fn rust_repr(attrs: &[Attribute]) -> Option<syn::Ident> {
    let mut found = None;
    for a in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        // Malformed `repr`s are rustc's to report.
        let _ = a.parse_nested_meta(|meta| {
            if let Some(ident) = meta.path.get_ident() {
                let s = ident.to_string();
                if matches!(
                    s.as_str(),
                    "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64"
                ) {
                    found = Some(ident.clone());
                }
            }
            // Skip `align(..)` and the like.
            if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        });
    }
    found
}

/// `#[derive(Message)]`'s input with its attributes parsed.
pub fn input<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Input<'a> {
    let mut name = None;
    let mut repr = None;
    let data = match &input.data {
        Data::Struct(s) => {
            for a in fbs_attrs::<OnStruct>(cx, &input.attrs) {
                if let FbsAttr::Name(_, n) = a {
                    name = Some(n);
                }
            }
            let fields = s
                .fields
                .iter()
                .map(|field| {
                    let mut f = InputField {
                        field,
                        id: None,
                        deprecated: false,
                        union: None,
                    };
                    for a in fbs_attrs::<OnField>(cx, &field.attrs) {
                        match a {
                            FbsAttr::Id(_, lit) => f.id = Some(lit),
                            FbsAttr::Deprecated(_) => f.deprecated = true,
                            FbsAttr::Union(k) => f.union = Some(k),
                            FbsAttr::Name(..) | FbsAttr::Repr(..) => {}
                        }
                    }
                    f
                })
                .collect();
            InputData::Struct {
                shape: &s.fields,
                fields,
            }
        }
        Data::Enum(e) => {
            for a in fbs_attrs::<OnEnum>(cx, &input.attrs) {
                match a {
                    FbsAttr::Name(_, n) => name = Some(n),
                    FbsAttr::Repr(_, r) => repr = Some(r),
                    _ => {}
                }
            }
            let variants = e
                .variants
                .iter()
                .map(|variant| {
                    let mut name = None;
                    for a in fbs_attrs::<OnVariant>(cx, &variant.attrs) {
                        if let FbsAttr::Name(_, n) = a {
                            name = Some(n);
                        }
                    }
                    InputVariant { variant, name }
                })
                .collect();
            InputData::Enum { variants }
        }
        Data::Union(u) => InputData::Union {
            token: u.union_token,
        },
    };
    Input {
        ident: &input.ident,
        generics: &input.generics,
        name,
        repr,
        rust_repr: rust_repr(&input.attrs),
        data,
    }
}
