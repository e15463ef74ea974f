//! Checks: one function per rule, each reporting into the collector, producing
//! the typed AST only from valid input.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Expr, ExprLit, FnArg, GenericParam, ItemFn, Lit, Type};

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

pub(crate) fn int_literal(expr: &Expr) -> Option<&syn::LitInt> {
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

mod message;
mod message_enum;
pub use message::message;
