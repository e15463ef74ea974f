//! The typed AST the macros work on.

use proc_macro2::{Ident, Span};
use syn::{Expr, Type};

/// A function marked `#[opcode]`, `#[override_opcode]`, `#[on_connect]` or
/// `#[on_disconnect]`: its name and argument types (extraction is the traits'
/// business; the macro only needs the types for its compile-time checks).
pub struct HandlerFn {
    pub name: Ident,
    pub is_async: bool,
    pub args: Vec<Type>,
    /// The declared return type (`()` when none); `None` for `impl Trait`, whose
    /// output only the compiler knows.
    pub ret: Option<Type>,
    /// The parenthesized argument list: where errors about the function as a
    /// whole point.
    pub inputs_span: Span,
}

/// What a handler registers as.
pub enum HandlerTarget {
    /// An application opcode, with its quota (`quota = "10/s"`) and who may send
    /// it (`auth`, `auth = "claim:role=admin"`), if any.
    Opcode(u16, OpcodeOptions),
    Override(Ident),
}

/// The options of `#[opcode(N, ..)]`.
#[derive(Default)]
pub struct OpcodeOptions {
    pub quota: Option<syn::LitStr>,
    /// The grant text (`"authenticated"` for a bare `auth`).
    pub auth: Option<String>,
}

/// `#[raw_ws(port = P)]`.
pub struct RawArgs {
    pub port: u16,
    /// The environment variable that overrides the port.
    pub env: Option<syn::LitStr>,
}

/// A `#[raw_ws]` function: its name and its one argument's type.
pub struct RawFn {
    pub name: Ident,
    pub arg: Type,
    pub inputs_span: Span,
}

/// Where `main!` listens: a port literal, an address literal (checked), or an
/// expression converted with `ListenAddr::from`.
pub enum Listen {
    Port(u16),
    Addr(syn::LitStr),
    Expr(Expr),
}

/// `main!(...)`.
#[derive(Default)]
pub struct MainArgs {
    pub websocket: Option<Listen>,
    pub service: Option<Listen>,
    pub state: Vec<Expr>,
    pub config: Option<Expr>,
    pub router: Option<Expr>,
    pub tls: Option<Expr>,
}

mod message;
pub use message::*;
