//! Procedural macros for `framework` (use them through `framework`, whose docs
//! show each with its equivalent code): `#[opcode]`, `#[override_opcode]`,
//! `#[raw_ws]`, `#[on_connect]`, `#[on_disconnect]`, `#[authorize]`, `#[derive(Message)]` and
//! `main!`. Each entry point parses into a
//! typed AST, checks every rule into one error collector, and expands into calls
//! on the public runtime API (the docs of each macro in `framework` show the
//! equivalent code without the macro). On error the user's item is still emitted
//! next to the errors, so IDEs keep working.

mod ast;
mod check;
mod ctxt;
mod expand;
mod parse;

use proc_macro::TokenStream;

/// Registers an application opcode handler. See `framework::opcode`.
#[proc_macro_attribute]
pub fn opcode(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(parse::Target::Opcode, args.into(), item.into()).into()
}

/// Replaces a built-in opcode's handler. See `framework::override_opcode`.
#[proc_macro_attribute]
pub fn override_opcode(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::handler(parse::Target::Override, args.into(), item.into()).into()
}

/// Registers an `on_connect` hook. See `framework::on_connect`.
#[proc_macro_attribute]
pub fn on_connect(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(parse::Hook::Connect, args.into(), item.into()).into()
}

/// Registers an `on_disconnect` hook. See `framework::on_disconnect`.
#[proc_macro_attribute]
pub fn on_disconnect(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(parse::Hook::Disconnect, args.into(), item.into()).into()
}

/// Registers an authorizer. See `framework::authorize`.
#[proc_macro_attribute]
pub fn authorize(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(parse::Hook::Authorize, args.into(), item.into()).into()
}

/// Registers a raw WebSocket service. See `framework::raw_ws`.
#[proc_macro_attribute]
pub fn raw_ws(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::raw_ws(args.into(), item.into()).into()
}

/// Derives `framework::Message`. See `framework::Message`.
#[proc_macro_derive(Message, attributes(fbs))]
pub fn derive_message(item: TokenStream) -> TokenStream {
    expand::message(item.into()).into()
}

/// Generates `fn main`. See `framework::main`.
#[proc_macro]
pub fn main(args: TokenStream) -> TokenStream {
    expand::main(args.into()).into()
}

/// The built-in names `#[override_opcode]` accepts, as a string array; the
/// runtime's tests compare them with its table of built-ins. Not a public API.
#[doc(hidden)]
#[proc_macro]
pub fn __overridable_names(_: TokenStream) -> TokenStream {
    let names = check::OVERRIDABLE;
    quote::quote!([#(#names),*]).into()
}
