//! Checks: one function per rule, each reporting into the collector, producing
//! the typed AST only from valid input.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Expr, ExprLit, Fields, FnArg, GenericParam, ItemFn, Lit, Type};

use crate::ast::*;
use crate::ctxt::Ctxt;
use crate::parse::{metas, Meta};

/// Built-ins a client sends, which an application may override.
pub const OVERRIDABLE: &[&str] = &[
    "Ping",
    "Subscribe",
    "Unsubscribe",
    "Publish",
    "Send",
    "Broadcast",
    "Auth",
];
/// Built-ins only the server sends.
const SERVER_ONLY: &[&str] = &["None", "Welcome", "Pong", "Ack", "Error"];

fn int_literal(expr: &Expr) -> Option<&syn::LitInt> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i),
        Expr::Group(g) => int_literal(&g.expr),
        _ => None,
    }
}

/// `#[opcode(N)]`: N is an integer literal in 200..=65535.
pub fn opcode_args(cx: &Ctxt, args: TokenStream) -> Option<HandlerTarget> {
    if args.is_empty() {
        cx.error_spanned_by(
            &args,
            "#[opcode] needs the opcode: #[opcode(200)] (application opcodes are 200..=65535)",
        );
        return None;
    }
    let expr: Expr = match syn::parse2(args) {
        Ok(e) => e,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    let Some(lit) = int_literal(&expr) else {
        cx.error_spanned_by(
            &expr,
            "the opcode must be an integer literal, e.g. #[opcode(200)]",
        );
        return None;
    };
    match lit.base10_parse::<u64>() {
        Ok(n) if (200..=65535).contains(&n) => Some(HandlerTarget::Opcode(n as u16)),
        Ok(n) if n < 200 => {
            cx.error_spanned_by(
                lit,
                format!("opcode {n} is reserved for the framework: application opcodes are 200..=65535 (to replace a built-in, use #[override_opcode(Name)])"),
            );
            None
        }
        _ => {
            cx.error_spanned_by(
                lit,
                "opcodes are 16-bit: application opcodes are 200..=65535",
            );
            None
        }
    }
}

/// `#[override_opcode(Name)]`: Name is a built-in a client sends.
pub fn override_args(cx: &Ctxt, args: TokenStream) -> Option<HandlerTarget> {
    let expected = OVERRIDABLE.join(", ");
    let ident: syn::Ident = match syn::parse2(args.clone()) {
        Ok(i) => i,
        Err(_) => {
            cx.error_spanned_by(
                &args,
                format!("#[override_opcode] takes one built-in opcode name, e.g. #[override_opcode(Ping)]; expected one of: {expected}"),
            );
            return None;
        }
    };
    let name = ident.to_string();
    if OVERRIDABLE.contains(&name.as_str()) {
        return Some(HandlerTarget::Override(ident));
    }
    if SERVER_ONLY.contains(&name.as_str()) {
        cx.error_spanned_by(
            &ident,
            format!("`{name}` is sent by the server, not by clients, so it has no handler to override; expected one of: {expected}"),
        );
    } else {
        cx.error_spanned_by(
            &ident,
            format!("unknown built-in opcode `{name}`; expected one of: {expected}"),
        );
    }
    None
}

/// The last path segment of `ty`, if it is a plain path without generics.
fn plain_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            last.arguments.is_none().then(|| last.ident.to_string())
        }
        Type::Group(g) => plain_name(&g.elem),
        Type::Paren(p) => plain_name(&p.elem),
        _ => None,
    }
}

fn no_generics(cx: &Ctxt, item: &ItemFn, what: &str) {
    for p in &item.sig.generics.params {
        if !matches!(p, GenericParam::Lifetime(_)) {
            cx.error_spanned_by(
                p,
                format!(
                    "{what} functions cannot be generic: the registry needs one concrete function"
                ),
            );
        }
    }
}

/// A handler function: free, not generic; its arguments classified.
pub fn handler_fn(cx: &Ctxt, item: &ItemFn) -> HandlerFn {
    no_generics(cx, item, "handler");
    let mut args = Vec::new();
    let mut owned_request: Option<&Type> = None;
    for input in &item.sig.inputs {
        match input {
            FnArg::Receiver(r) => cx.error_spanned_by(
                r,
                "handlers are free functions: `self` is not allowed (wrap a method in a function)",
            ),
            FnArg::Typed(pat) => {
                let ty = (*pat.ty).clone();
                let kind = match &ty {
                    Type::Reference(r) if plain_name(&r.elem).as_deref() == Some("Request") => {
                        if r.mutability.is_some() {
                            ArgKind::RequestMut
                        } else {
                            ArgKind::RequestRef
                        }
                    }
                    t if plain_name(t).as_deref() == Some("Request") => {
                        if owned_request.is_some() {
                            cx.error_spanned_by(
                                &pat.ty,
                                "a handler takes the `Request` by value once; take `&Request` or extractors for the rest",
                            );
                        }
                        owned_request = Some(&pat.ty);
                        ArgKind::Request
                    }
                    _ => ArgKind::Extract,
                };
                args.push(Arg { kind, ty });
            }
        }
    }
    if owned_request.is_some()
        && args
            .iter()
            .any(|a| matches!(a.kind, ArgKind::RequestRef | ArgKind::RequestMut))
    {
        cx.error_spanned_by(
            &item.sig.inputs,
            "a handler cannot take `Request` both by value and by reference",
        );
    }
    if let Some(v) = &item.sig.variadic {
        cx.error_spanned_by(v, "handlers cannot be variadic");
    }
    HandlerFn {
        name: item.sig.ident.clone(),
        is_async: item.sig.asyncness.is_some(),
        args,
    }
}

/// Rejects a key given twice and unknown keys (listing the valid ones).
fn known_keys<'m>(
    cx: &Ctxt,
    metas: &'m [Meta],
    valid: &[&str],
    what: &str,
) -> HashMap<String, &'m Meta> {
    let mut seen: HashMap<String, &Meta> = HashMap::new();
    for m in metas {
        let key = m.key.to_string();
        if !valid.contains(&key.as_str()) {
            cx.error_spanned_by(
                &m.key,
                format!(
                    "unknown key `{key}` for {what}; valid keys: {}",
                    valid.join(", ")
                ),
            );
            continue;
        }
        if seen.contains_key(&key) {
            cx.error_spanned_by(&m.key, format!("`{key}` is given twice"));
            continue;
        }
        if m.value.is_none() {
            cx.error_spanned_by(&m.key, format!("`{key}` needs a value: `{key} = ...`"));
            continue;
        }
        seen.insert(key, m);
    }
    seen
}

fn port(cx: &Ctxt, expr: &Expr) -> Option<u16> {
    let parsed = int_literal(expr).map(|l| (l, l.base10_parse::<u64>()));
    match parsed {
        Some((_, Ok(p))) if p <= 65535 => Some(p as u16),
        Some((lit, _)) => {
            cx.error_spanned_by(lit, "a port is 0..=65535");
            None
        }
        None => {
            cx.error_spanned_by(expr, "the port must be an integer literal (override it at run time with FRAMEWORK_RAW_<port>_PORT)");
            None
        }
    }
}

/// `#[raw_ws(port = P)]`.
pub fn raw_args(cx: &Ctxt, args: TokenStream, item: &ItemFn) -> Option<RawArgs> {
    no_generics(cx, item, "raw_ws");
    if let Some(FnArg::Receiver(r)) = item.sig.inputs.first() {
        cx.error_spanned_by(r, "raw handlers are free functions: `self` is not allowed");
    }
    let list = match metas(args.clone()) {
        Ok(l) => l,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    let keys = known_keys(cx, &list, &["port", "env"], "#[raw_ws]");
    let env = match keys.get("env").and_then(|m| m.value.as_ref()) {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => Some(s.clone()),
        Some(other) => {
            cx.error_spanned_by(other, "`env` names an environment variable: env = \"PORT\"");
            None
        }
        None => None,
    };
    match keys.get("port").and_then(|m| m.value.as_ref()) {
        Some(expr) => port(cx, expr).map(|port| RawArgs { port, env }),
        None => {
            if list.iter().all(|m| m.key != "port") {
                cx.error_spanned_by(
                    if args.is_empty() {
                        item.sig.ident.to_token_stream()
                    } else {
                        args
                    },
                    "#[raw_ws] needs the port it listens on: #[raw_ws(port = 8082)]",
                );
            }
            None
        }
    }
}

/// `main!(websocket = P, service = P, state = EXPR, config = EXPR)`.
pub fn main_args(cx: &Ctxt, args: TokenStream) -> MainArgs {
    let list = match metas(args) {
        Ok(l) => l,
        Err(e) => {
            cx.syn_error(e);
            return MainArgs::default();
        }
    };
    let keys = known_keys(
        cx,
        &list,
        &["websocket", "service", "state", "config"],
        "framework::main!",
    );
    let get = |k: &str| keys.get(k).and_then(|m| m.value.clone());
    // `state = [a, b]` registers several states (one key, several values).
    let state = match get("state") {
        Some(Expr::Array(list)) => list.elems.into_iter().collect(),
        other => other.into_iter().collect(),
    };
    MainArgs {
        websocket: get("websocket"),
        service: get("service"),
        state,
        config: get("config"),
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
