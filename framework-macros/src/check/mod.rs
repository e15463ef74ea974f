//! Checks: one function per rule, each reporting into the collector, producing
//! the typed AST only from valid input. Argument types are not judged here (a
//! type's extractor-ness is the traits' business, checked by the compiler where
//! the expansion registers the function); only what syntax alone decides.

use std::collections::HashMap;

use syn::{Expr, ExprLit, FnArg, GenericParam, ItemFn, Lit, ReturnType, Type};

use crate::ast::*;
use crate::ctxt::Ctxt;
use crate::parse::{KeyValues, Meta, OpcodeAttr, OverrideAttr};

/// Built-ins a client sends, which an application may override. Each expansion
/// checks its name against the runtime's table (`framework::builtins::BUILTINS`)
/// at compile time, so this list cannot drift from it unnoticed.
pub const OVERRIDABLE: &[&str] = &[
    "Ping",
    "Subscribe",
    "Unsubscribe",
    "Publish",
    "Send",
    "Broadcast",
    "Auth",
    "Presence",
    "History",
];
/// Built-ins only the server sends.
const SERVER_ONLY: &[&str] = &["None", "Welcome", "Pong", "Ack", "Error", "Join", "Leave"];

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
pub fn opcode_args(cx: &Ctxt, attr: &OpcodeAttr) -> Option<HandlerTarget> {
    let Some(expr) = &attr.value else {
        cx.syn_error(syn::Error::new(
            attr.span,
            "#[opcode] needs the opcode: #[opcode(200)] (application opcodes are 200..=65535)",
        ));
        return None;
    };
    let Some(lit) = int_literal(expr) else {
        cx.error_spanned_by(
            expr,
            "the opcode must be an integer literal, e.g. #[opcode(200)]",
        );
        return None;
    };
    let options = opcode_options(cx, &attr.options);
    match lit.base10_parse::<u64>() {
        Ok(n) if (200..=65535).contains(&n) => Some(HandlerTarget::Opcode(n as u16, options)),
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

/// The options after the opcode: `quota = "10/s"` and `auth` / `auth = "claim:.."`
/// (both checked here, so a value that does not parse is an error at it).
fn opcode_options(cx: &Ctxt, options: &[Meta]) -> OpcodeOptions {
    let mut out = OpcodeOptions::default();
    let mut seen: Vec<String> = Vec::new();
    for m in options {
        let key = m.key.to_string();
        if seen.contains(&key) {
            cx.error_spanned_by(&m.key, format!("`{key}` is given twice"));
            continue;
        }
        seen.push(key.clone());
        match (key.as_str(), &m.value) {
            (
                "quota",
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })),
            ) => match check_rate(&s.value()) {
                Ok(()) => out.quota = Some(s.clone()),
                Err(why) => cx.error_spanned_by(s, why),
            },
            ("quota", Some(other)) => cx.error_spanned_by(
                other,
                "`quota` takes a rate: quota = \"10/s\" or \"10/s burst 40\"",
            ),
            ("quota", None) => {
                cx.error_spanned_by(&m.key, "`quota` needs a value: quota = \"10/s\"")
            }
            ("auth", None) => out.auth = Some("authenticated".into()),
            (
                "auth",
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                })),
            ) => match check_grant(&s.value()) {
                Ok(()) => out.auth = Some(s.value()),
                Err(why) => cx.error_spanned_by(s, why),
            },
            ("auth", Some(other)) => cx.error_spanned_by(
                other,
                "`auth` takes a grant: auth, auth = \"authenticated\", auth = \"claim:role=admin\"",
            ),
            (k, _) => cx.error_spanned_by(
                &m.key,
                format!("unknown key `{k}` for #[opcode]; valid keys: quota, auth"),
            ),
        }
    }
    out
}

/// The grammar of `framework::config::Grant`.
fn check_grant(text: &str) -> Result<(), String> {
    let text = text.trim();
    let ok = matches!(text, "anyone" | "authenticated" | "nobody")
        || text
            .strip_prefix("claim:")
            .and_then(|r| r.split_once('=').or_else(|| r.split_once('~')))
            .is_some_and(|(name, _)| !name.trim().is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("`{text}` is not a grant: anyone, authenticated, nobody, claim:NAME=VALUE or claim:NAME~VALUE"))
    }
}

/// The grammar of `framework::config::Rate`: `COUNT/PERIOD [burst COUNT]`,
/// counts optionally in B/KiB/MiB/GiB, periods `s`, `m`, `h` or a duration like
/// `250ms`.
fn check_rate(text: &str) -> Result<(), String> {
    let bad =
        || format!("`{text}` is not a rate: write e.g. \"10/s\", \"600/m\" or \"10/s burst 40\"");
    let count = |t: &str| -> bool {
        let t = t.trim();
        let digits = t.chars().take_while(char::is_ascii_digit).count();
        digits > 0
            && t[..digits].parse::<u64>().is_ok_and(|n| n > 0)
            && matches!(t[digits..].trim(), "" | "B" | "KiB" | "MiB" | "GiB")
    };
    let (rate, burst) = match text.split_once("burst") {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (text, None),
    };
    let (n, per) = rate.split_once('/').ok_or_else(bad)?;
    let per = per.trim();
    let unit_start = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
    let period_ok = matches!(per, "s" | "m" | "h")
        || (unit_start > 0
            && per[..unit_start].parse::<u64>().is_ok_and(|n| n > 0)
            && matches!(&per[unit_start..], "ms" | "s" | "m" | "h" | "us" | "ns"));
    if count(n) && period_ok && burst.is_none_or(count) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `#[override_opcode(Name)]`: Name is a built-in a client sends.
pub fn override_args(cx: &Ctxt, attr: &OverrideAttr) -> Option<HandlerTarget> {
    let expected = OVERRIDABLE.join(", ");
    let ident = match attr {
        OverrideAttr::Name(ident) => ident,
        OverrideAttr::Malformed(tokens) => {
            cx.error_spanned_by(
                tokens,
                format!("#[override_opcode] takes one built-in opcode name, e.g. #[override_opcode(Ping)]; expected one of: {expected}"),
            );
            return None;
        }
    };
    let name = ident.to_string();
    if OVERRIDABLE.contains(&name.as_str()) {
        return Some(HandlerTarget::Override(ident.clone()));
    }
    if SERVER_ONLY.contains(&name.as_str()) {
        cx.error_spanned_by(
            ident,
            format!("`{name}` is sent by the server, not by clients, so it has no handler to override; expected one of: {expected}"),
        );
    } else {
        cx.error_spanned_by(
            ident,
            format!("unknown built-in opcode `{name}`; expected one of: {expected}"),
        );
    }
    None
}

/// The registry needs one concrete function: no type or const generics.
fn not_generic(cx: &Ctxt, item: &ItemFn, what: &str) {
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

/// Free functions only: no `self`.
fn no_receiver(cx: &Ctxt, item: &ItemFn, what: &str) {
    if let Some(FnArg::Receiver(r)) = item.sig.inputs.first() {
        cx.error_spanned_by(
            r,
            format!(
                "{what}s are free functions: `self` is not allowed (wrap a method in a function)"
            ),
        );
    }
}

fn not_variadic(cx: &Ctxt, item: &ItemFn, what: &str) {
    if let Some(v) = &item.sig.variadic {
        cx.error_spanned_by(v, format!("{what}s cannot be variadic"));
    }
}

/// Arguments are extracted values, never references (nothing lives long enough
/// to lend them): `&Request` becomes `Request`, `&mut Request` `mut ctx: Request`.
fn args_by_value(cx: &Ctxt, ty: &Type) {
    if let Type::Reference(r) = ty {
        let elem = &r.elem;
        let hint = if r.mutability.is_some() {
            format!(
                "take it by value and declare the binding `mut`: `mut ctx: {}`",
                quote::quote!(#elem)
            )
        } else {
            format!("take it by value: `{}`", quote::quote!(#elem))
        };
        cx.error_spanned_by(
            ty,
            format!("handler arguments are taken by value, not borrowed; {hint}"),
        );
    }
}

/// The argument types of a handler or hook function.
fn arg_types(item: &ItemFn) -> Vec<Type> {
    item.sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(pat) => Some((*pat.ty).clone()),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// A handler or hook function: free, not generic, arguments by value.
pub fn handler_fn(cx: &Ctxt, item: &ItemFn, what: &str) -> HandlerFn {
    not_generic(cx, item, what);
    no_receiver(cx, item, what);
    not_variadic(cx, item, what);
    let args = arg_types(item);
    for ty in &args {
        args_by_value(cx, ty);
    }
    let ret = match &item.sig.output {
        ReturnType::Default => Some(syn::parse_quote!(())),
        ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)) => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    HandlerFn {
        name: item.sig.ident.clone(),
        is_async: item.sig.asyncness.is_some(),
        args,
        ret,
        inputs_span: item.sig.paren_token.span.join(),
    }
}

/// A `#[raw_ws]` function: free, not generic, exactly one argument.
pub fn raw_fn(cx: &Ctxt, item: &ItemFn) -> Option<RawFn> {
    not_generic(cx, item, "raw_ws");
    no_receiver(cx, item, "raw handler");
    not_variadic(cx, item, "raw handler");
    let args = arg_types(item);
    let inputs_span = item.sig.paren_token.span.join();
    if args.len() != 1 {
        cx.syn_error(syn::Error::new(
            inputs_span,
            format!(
                "a raw handler takes one argument, the connection: `fn {}(conn: RawConnection)`",
                item.sig.ident
            ),
        ));
        return None;
    }
    if let ReturnType::Type(_, ty) = &item.sig.output {
        if !matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()) {
            cx.error_spanned_by(
                ty,
                "a raw handler returns nothing: it talks through its RawConnection",
            );
        }
    }
    Some(RawFn {
        name: item.sig.ident.clone(),
        arg: args.into_iter().next()?,
        inputs_span,
    })
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

/// `#[raw_ws(port = P, env = "VAR")]`.
pub fn raw_args(cx: &Ctxt, args: &KeyValues, item: &ItemFn) -> Option<RawArgs> {
    let keys = known_keys(cx, &args.metas, &["port", "env"], "#[raw_ws]");
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
            if args.metas.iter().all(|m| m.key != "port") {
                let message = "#[raw_ws] needs the port it listens on: #[raw_ws(port = 8082)]";
                if args.tokens.is_empty() {
                    cx.error_spanned_by(&item.sig.ident, message);
                } else {
                    cx.error_spanned_by(&args.tokens, message);
                }
            }
            None
        }
    }
}

/// A listener of `main!`: a port literal, an address literal (`"127.0.0.1:8081"`,
/// checked here), or any other expression (`ListenAddr::from`).
fn listen(cx: &Ctxt, expr: Expr) -> Option<Listen> {
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let text = s.value();
            let valid = text.trim().parse::<u16>().is_ok()
                || text.trim().parse::<std::net::SocketAddr>().is_ok();
            if valid {
                Some(Listen::Addr(s.clone()))
            } else {
                cx.error_spanned_by(
                    s,
                    format!(
                        "`{text}` is not a port or an address: write 8081 or \"127.0.0.1:8081\""
                    ),
                );
                None
            }
        }
        _ => match int_literal(&expr) {
            Some(lit) => match lit.base10_parse::<u16>() {
                Ok(port) => Some(Listen::Port(port)),
                Err(_) => {
                    cx.error_spanned_by(lit, "a port is 0..=65535");
                    None
                }
            },
            None => Some(Listen::Expr(expr)),
        },
    }
}

/// `main!(websocket = P, service = P, state = EXPR, config = EXPR, router = EXPR,
/// tls = EXPR)`.
pub fn main_args(cx: &Ctxt, args: &KeyValues) -> MainArgs {
    let keys = known_keys(
        cx,
        &args.metas,
        &["websocket", "service", "state", "config", "router", "tls"],
        "framework::main!",
    );
    let get = |k: &str| keys.get(k).and_then(|m| m.value.clone());
    // `state = [a, b]` registers several states (one key, several values).
    let state = match get("state") {
        Some(Expr::Array(list)) => list.elems.into_iter().collect(),
        other => other.into_iter().collect(),
    };
    MainArgs {
        websocket: get("websocket").and_then(|e| listen(cx, e)),
        service: get("service").and_then(|e| listen(cx, e)),
        state,
        config: get("config"),
        router: get("router"),
        tls: get("tls"),
    }
}

mod message;
mod message_enum;
pub use message::message;
