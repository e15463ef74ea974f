//! The typed AST the macros work on.

use proc_macro2::Ident;
use syn::{Expr, Type};

/// How a handler argument is obtained.
pub enum ArgKind {
    /// `Request` by value: the request itself is moved in.
    Request,
    /// `&Request`.
    RequestRef,
    /// `&mut Request`.
    RequestMut,
    /// Anything else: `FromRequest` (an extractor or the typed message).
    Extract,
}

pub struct Arg {
    pub kind: ArgKind,
    pub ty: Type,
}

/// A function marked `#[opcode]` or `#[override_opcode]`.
pub struct HandlerFn {
    pub name: Ident,
    pub is_async: bool,
    pub args: Vec<Arg>,
}

/// What a handler registers as.
pub enum HandlerTarget {
    Opcode(u16),
    Override(Ident),
}

/// `#[raw_ws(port = P)]`.
pub struct RawArgs {
    pub port: u16,
    /// The environment variable that overrides the port.
    pub env: Option<syn::LitStr>,
}

/// `main!(...)`.
#[derive(Default)]
pub struct MainArgs {
    pub websocket: Option<Expr>,
    pub service: Option<Expr>,
    pub state: Vec<Expr>,
    pub config: Option<Expr>,
}

mod message;
pub use message::*;
