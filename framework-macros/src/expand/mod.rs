//! Expansion: quote only. Each macro becomes calls on the public runtime API
//! through `::framework::__private`, plus an `inventory` registration.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{ItemFn, Lifetime, Type};

use crate::ast::*;
use crate::check;
use crate::ctxt::Ctxt;
use crate::parse::Target;

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

/// Replaces every lifetime with `lt` (types are re-used in expressions and consts).
struct Lifetimes(&'static str);

impl VisitMut for Lifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        *l = Lifetime::new(self.0, l.span());
    }
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(Lifetime::new(self.0, r.and_token.span));
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
}

fn with_lifetimes(ty: &Type, lt: &'static str) -> Type {
    let mut ty = ty.clone();
    Lifetimes(lt).visit_type_mut(&mut ty);
    ty
}

/// `#[opcode(N)]` / `#[override_opcode(Name)]`.
pub fn handler(target: Target, args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match parse_fn(item.clone()) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let target_cx = Ctxt::new();
    let target = match target {
        Target::Opcode => check::opcode_args(&target_cx, args),
        Target::Override => check::override_args(&target_cx, args),
    };
    let fn_cx = Ctxt::new();
    let handler = check::handler_fn(&fn_cx, &func);
    let target_errors = target_cx.check().err();
    if let Err(errors) = fn_cx.check() {
        return with_errors(item, quote!(#target_errors #errors));
    }
    let name = &handler.name;
    let name_str = name.to_string();

    let mut extract = Vec::new();
    let mut call_args = Vec::new();
    let mut checks = Vec::new();
    let mut messages_before: Vec<TokenStream> = Vec::new();
    for (i, arg) in handler.args.iter().enumerate() {
        let var = format_ident!("__arg{}", i);
        match arg.kind {
            ArgKind::Request => call_args.push(quote!(__req)),
            ArgKind::RequestRef => call_args.push(quote!(&__req)),
            ArgKind::RequestMut => call_args.push(quote!(&mut __req)),
            ArgKind::Extract => {
                let ty = with_lifetimes(&arg.ty, "'_");
                let span = arg.ty.span();
                extract.push(quote_spanned! {span=>
                    let #var = match <#ty as ::framework::__private::FromRequest<'_, _>>::from_request(&__req, &__body) {
                        ::core::result::Result::Ok(v) => v,
                        ::core::result::Result::Err(e) => return ::framework::IntoReply::into_reply(e),
                    };
                });
                call_args.push(quote!(#var));
                // At most one typed message: flag each message after the first.
                let static_ty = with_lifetimes(&arg.ty, "'static");
                let is_msg = quote!(::framework::__private::is_message::<#static_ty, _>());
                // The first extracted argument cannot be a second message; skipping
                // it also avoids repeating its trait error when it is no extractor.
                if !messages_before.is_empty() {
                    let message = format!(
                        "handler `{name_str}` takes a second typed message argument: a frame carries one payload, so a handler takes at most one message"
                    );
                    checks.push(quote_spanned! {span=>
                        const _: () = ::core::assert!(!((#(#messages_before)||*) && #is_msg), #message);
                    });
                }
                messages_before.push(is_msg);
            }
        }
    }
    let mutability = if handler
        .args
        .iter()
        .any(|a| matches!(a.kind, ArgKind::RequestMut))
    {
        quote!(mut)
    } else {
        quote!()
    };
    // A typed message may borrow the payload. When the request itself is moved or
    // borrowed mutably, the payload is a refcounted clone; otherwise a borrow.
    let owns_request = handler
        .args
        .iter()
        .any(|a| matches!(a.kind, ArgKind::Request | ArgKind::RequestMut));
    let body_clone = if owns_request {
        quote! { let __body = ::core::clone::Clone::clone(::framework::Request::body(&__req)); }
    } else {
        quote! { let __body = ::framework::Request::body(&__req); }
    };
    let call = quote!(#name(#(#call_args),*));
    // A return type that is no reply is reported at the return type.
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => func.sig.ident.span(),
    };
    let into_reply = quote_spanned!(ret_span=> ::framework::IntoReply::into_reply);
    let ret = proc_macro2::Ident::new("__ret", ret_span);
    let wrapper = if handler.is_async {
        quote! {
            fn __framework_handler(#mutability __req: ::framework::Request)
                -> impl ::core::future::Future<Output = ::framework::Reply> + ::core::marker::Send + 'static
            {
                async move {
                    #body_clone
                    #(#extract)*
                    let #ret = #call.await;
                    #into_reply(#ret)
                }
            }
        }
    } else {
        quote! {
            fn __framework_handler(#mutability __req: ::framework::Request) -> ::framework::Reply {
                #body_clone
                #(#extract)*
                let #ret = #call;
                #into_reply(#ret)
            }
        }
    };
    // With a bad opcode, the function's own type checks still run, so every error
    // shows at once; nothing is registered.
    let (Some(target), None) = (target, &target_errors) else {
        return quote! {
            #func
            #target_errors
            #[doc(hidden)]
            const _: () = {
                #(#checks)*
                #wrapper
            };
        };
    };
    let kind = match target {
        HandlerTarget::Opcode(n) => {
            quote!(::framework::__private::Kind::Opcode(#n, __framework_make))
        }
        HandlerTarget::Override(ident) => {
            quote!(::framework::__private::Kind::Override(::framework::protocol::Opcode::#ident, __framework_make))
        }
    };
    quote! {
        #func
        #[doc(hidden)]
        const _: () = {
            #(#checks)*
            #wrapper
            fn __framework_make() -> ::framework::__private::BoxedHandler {
                ::framework::__private::BoxedHandler::new(__framework_handler)
            }
            ::framework::__private::inventory::submit! {
                ::framework::__private::Registration {
                    kind: #kind,
                    name: #name_str,
                    file: ::core::file!(),
                    line: ::core::line!(),
                }
            }
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
    let raw = check::raw_args(&cx, args, &func);
    if let Err(errors) = cx.check() {
        return with_errors(item, errors);
    }
    let raw = raw.expect("checked");
    let port = raw.port;
    let env = match &raw.env {
        Some(var) => quote!(::core::option::Option::Some(#var)),
        None => quote!(::core::option::Option::None),
    };
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let span = func.sig.span();
    let make = quote_spanned! {span=>
        fn __framework_make() -> ::framework::__private::BoxedRawHandler {
            ::framework::__private::BoxedRawHandler::new(#name)
        }
    };
    quote! {
        #func
        #[doc(hidden)]
        const _: () = {
            #make
            ::framework::__private::inventory::submit! {
                ::framework::__private::Registration {
                    kind: ::framework::__private::Kind::Raw(#port, #env, __framework_make),
                    name: #name_str,
                    file: ::core::file!(),
                    line: ::core::line!(),
                }
            }
        };
    }
}

/// `framework::main!(...)`.
pub fn main(args: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let main = check::main_args(&cx, args);
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
    if let Some(port) = &main.websocket {
        steps.push(quote! {
            let app = app.run_websocket_service(::framework::__private::port_from_env("WEBSOCKET", #port));
        });
    }
    if let Some(port) = &main.service {
        steps.push(quote! {
            let app = app.run_service(::framework::__private::port_from_env("SERVICE", #port));
        });
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
