//! Expansion: quote only. Each macro becomes calls on the public runtime API
//! through `::framework::__private`, plus an `inventory` registration; the user's
//! function itself is registered as it is (no wrapper).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{ItemFn, Lifetime, Type};

use crate::ast::*;
use crate::check;
use crate::ctxt::Ctxt;
use crate::parse::{Hook, KeyValues, NoArgs, OpcodeAttr, OverrideAttr, Target};

/// Emits the user's item unchanged next to the errors, so IDEs keep working.
fn with_errors(item: TokenStream, errors: TokenStream) -> TokenStream {
    quote! { #item #errors }
}

fn parse_fn(item: TokenStream) -> Result<ItemFn, TokenStream> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|e| {
        let err = syn::Error::new(e.span(), "this attribute goes on a function").to_compile_error();
        with_errors(item, err)
    })
}

/// Replaces every lifetime with `'static` (types are re-used in consts).
struct StaticLifetimes;

impl VisitMut for StaticLifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        *l = Lifetime::new("'static", l.span());
    }
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(Lifetime::new("'static", r.and_token.span));
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
}

fn with_static_lifetimes(ty: &Type) -> Type {
    let mut ty = ty.clone();
    StaticLifetimes.visit_type_mut(&mut ty);
    ty
}

/// The function's name, spanned at its argument list: errors about the function
/// as a handler (an argument that is no extractor, a return type that is no
/// reply) point there, not into the framework.
fn name_at_inputs(f: &HandlerFn) -> proc_macro2::Ident {
    let mut name = f.name.clone();
    name.set_span(f.inputs_span);
    name
}

/// `__framework_make`, which erases the handler. With a declared return type, the
/// argument and return types are spelled out (through the typed constructors), so
/// a type that is no extractor or no reply is one error naming it: arguments at
/// the argument list, the return type at the return type.
fn make_handler(f: &HandlerFn) -> TokenStream {
    let name = name_at_inputs(f);
    let Some(ret) = &f.ret else {
        return quote! {
            fn __framework_make() -> ::framework::__private::BoxedHandler {
                ::framework::__private::BoxedHandler::new(#name)
            }
        };
    };
    let ret = with_static_lifetimes(ret);
    let args: Vec<Type> = f.args.iter().map(with_static_lifetimes).collect();
    let n = args.len();
    let span = f.inputs_span;
    // The return type keeps its own span: a type that is no reply is reported there.
    let (ctor, rest) = if f.is_async {
        (format_ident!("async{}", n, span = span), quote!(#ret, _, _))
    } else {
        (format_ident!("sync{}", n, span = span), quote!(#ret, _))
    };
    let call = quote_spanned! {span=>
        ::framework::__private::typed::#ctor::<#(#args, _,)* #rest>(#name)
    };
    quote! {
        fn __framework_make() -> ::framework::__private::BoxedHandler {
            #call
        }
    }
}

fn registration(kind: TokenStream, name: &str) -> TokenStream {
    quote! {
        ::framework::__private::inventory::submit! {
            ::framework::__private::Registration {
                kind: #kind,
                name: #name,
                file: ::core::file!(),
                line: ::core::line!(),
            }
        }
    }
}

/// `#[opcode(N)]` / `#[override_opcode(Name)]`.
pub fn handler(target: Target, args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(item.clone()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let target_cx = Ctxt::new();
    let target = match target {
        Target::Opcode => match syn::parse2::<OpcodeAttr>(args) {
            Ok(attr) => check::opcode_args(&target_cx, &attr),
            Err(e) => {
                target_cx.syn_error(e);
                None
            }
        },
        Target::Override => match syn::parse2::<OverrideAttr>(args) {
            Ok(attr) => check::override_args(&target_cx, &attr),
            Err(e) => {
                target_cx.syn_error(e);
                None
            }
        },
    };
    let fn_cx = Ctxt::new();
    let handler = check::handler_fn(&fn_cx, &func, "handler");
    let target_errors = target_cx.check().err();
    if let Err(errors) = fn_cx.check() {
        return with_errors(item, quote!(#target_errors #errors));
    }
    let name_str = handler.name.to_string();
    let make = make_handler(&handler);
    // With a bad opcode, the function's own checks still run, so every error
    // shows at once; nothing is registered.
    let (Some(target), None) = (target, &target_errors) else {
        return quote! {
            #func
            #target_errors
            #[doc(hidden)]
            const _: () = {
                #make
            };
        };
    };
    let (kind, extra) = match target {
        HandlerTarget::Opcode(n, options) => {
            let quota = options.quota.map(|rate| {
                registration(
                    quote!(::framework::__private::Kind::Quota(#n, #rate)),
                    &name_str,
                )
            });
            let auth = options.auth.map(|grant| {
                registration(
                    quote!(::framework::__private::Kind::Require(#n, #grant)),
                    &name_str,
                )
            });
            (
                quote!(::framework::__private::Kind::Opcode(#n, __framework_make)),
                quote!(#quota #auth),
            )
        }
        HandlerTarget::Override(ident) => {
            let message = format!(
                "`{ident}` is not a built-in a client sends (framework::builtins::BUILTINS)"
            );
            (
                quote!(::framework::__private::Kind::Override(::framework::protocol::Opcode::#ident, __framework_make)),
                quote_spanned! {ident.span()=>
                    const _: () = ::core::assert!(
                        ::framework::builtins::is_overridable(::framework::protocol::Opcode::#ident.0),
                        #message
                    );
                },
            )
        }
    };
    let register = registration(kind, &name_str);
    quote! {
        #func
        #[doc(hidden)]
        const _: () = {
            #extra
            #make
            #register
        };
    }
}

/// `#[on_connect]` / `#[on_disconnect]` / `#[authorize]`.
pub fn hook(hook: Hook, args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(item.clone()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let cx = Ctxt::new();
    if let Err(e) = syn::parse2::<NoArgs>(args) {
        cx.syn_error(e);
    }
    let f = check::handler_fn(&cx, &func, "hook");
    if let Err(errors) = cx.check() {
        return with_errors(item, errors);
    }
    let name = name_at_inputs(&f);
    let name_str = f.name.to_string();
    let (boxed, erase, kind) = match hook {
        Hook::Connect => (
            quote!(::framework::__private::BoxedConnectHook),
            quote!(::framework::__private::connect_hook(#name)),
            quote!(::framework::__private::Kind::OnConnect(__framework_make)),
        ),
        Hook::Disconnect => (
            quote!(::framework::__private::BoxedDisconnectHook),
            quote!(::framework::__private::disconnect_hook(#name)),
            quote!(::framework::__private::Kind::OnDisconnect(__framework_make)),
        ),
        Hook::Authorize => (
            quote!(::framework::__private::BoxedAuthorizer),
            quote!(::framework::__private::authorizer(
                #name,
                ::core::concat!(::core::module_path!(), "::", #name_str),
            )),
            quote!(::framework::__private::Kind::Authorize(__framework_make)),
        ),
    };
    let register = registration(kind, &name_str);
    quote! {
        #func
        #[doc(hidden)]
        const _: () = {
            fn __framework_make() -> #boxed {
                #erase
            }
            #register
        };
    }
}

/// `#[raw_ws(port = P)]`.
pub fn raw_ws(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(item.clone()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let cx = Ctxt::new();
    let raw = match syn::parse2::<KeyValues>(args) {
        Ok(args) => check::raw_args(&cx, &args, &func),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    };
    let raw_fn = check::raw_fn(&cx, &func);
    if let Err(errors) = cx.check() {
        return with_errors(item, errors);
    }
    let (Some(raw), Some(raw_fn)) = (raw, raw_fn) else {
        unreachable!("checked")
    };
    let port = raw.port;
    let env = match &raw.env {
        Some(var) => quote!(::core::option::Option::Some(#var)),
        None => quote!(::core::option::Option::None),
    };
    let name = &raw_fn.name;
    let name_str = name.to_string();
    // The connection is passed through a closure whose argument is the
    // framework's `RawConnection`: a function taking anything else is a type
    // mismatch at its own argument type.
    let conn = proc_macro2::Ident::new("__conn", raw_fn.arg.span());
    let call = quote_spanned! {raw_fn.inputs_span=> #name(#conn) };
    let register = registration(
        quote!(::framework::__private::Kind::Raw(#port, #env, __framework_make)),
        &name_str,
    );
    quote! {
        #func
        #[doc(hidden)]
        const _: () = {
            fn __framework_make() -> ::framework::__private::BoxedRawHandler {
                ::framework::__private::BoxedRawHandler::new(
                    |#conn: ::framework::raw::RawConnection| #call
                )
            }
            #register
        };
    }
}

/// `framework::main!(...)`.
pub fn main(args: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let main = match syn::parse2::<KeyValues>(args) {
        Ok(args) => check::main_args(&cx, &args),
        Err(e) => {
            cx.syn_error(e);
            MainArgs::default()
        }
    };
    if let Err(errors) = cx.check() {
        // Still a `main`, so the only errors are ours.
        return quote! { fn main() {} #errors };
    }
    let mut steps = Vec::new();
    if let Some(config) = &main.config {
        steps.push(quote!(let app = app.config(#config);));
    }
    for state in &main.state {
        steps.push(quote!(let app = app.with_state(#state);));
    }
    if let Some(router) = &main.router {
        steps.push(quote!(let app = app.router(#router);));
    }
    if let Some(tls) = &main.tls {
        // After `config`, which would replace it.
        steps.push(quote!(let app = app.tls(#tls);));
    }
    for (method, listen) in [
        (quote!(run_websocket_service), &main.websocket),
        (quote!(run_service), &main.service),
    ] {
        let addr = match listen {
            None => continue,
            Some(Listen::Port(port)) => quote!(#port),
            Some(Listen::Addr(lit)) => quote!(::framework::__private::listen_addr(#lit)),
            Some(Listen::Expr(e)) => {
                quote_spanned!(e.span()=> ::framework::app::ListenAddr::from(#e))
            }
        };
        steps.push(quote!(let app = app.#method(#addr);));
    }
    quote! {
        fn main() -> ::std::process::ExitCode {
            ::framework::__private::run_main(|| {
                let app = ::framework::App::new().with_registered();
                #(#steps)*
                app
            })
        }
    }
}

mod message;
pub use message::message;
