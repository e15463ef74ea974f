//! Expansion of `#[derive(Message)]`: quote only.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::DeriveInput;

use crate::ast::*;
use crate::check;
use crate::ctxt::Ctxt;

/// `#[derive(Message)]`.
pub fn message(item: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(item) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let cx = Ctxt::new();
    let def = check::message(&cx, &input);
    if let Err(errors) = cx.check() {
        return errors;
    }
    let def = def.expect("checked");
    let ident = &def.ident;
    let table = &def.table;
    let live: Vec<&MessageField> = def.fields.iter().filter(|f| !f.deprecated).collect();

    let field_check = |f: &MessageField| {
        let ty = &f.ty;
        quote_spanned! {f.span=> <#ty as ::framework::__private::Field> }
    };
    let prepare = live.iter().map(|f| {
        let var = format_ident!("__f_{}", f.ident);
        let name = &f.ident;
        let as_field = field_check(f);
        quote!(let #var = #as_field::prepare(&self.#name, fbb);)
    });
    let push = live.iter().map(|f| {
        let var = format_ident!("__f_{}", f.ident);
        let slot = 4 + 2 * f.id;
        let as_field = field_check(f);
        quote!(#as_field::push(fbb, #slot, #var);)
    });
    let verify = live.iter().map(|f| {
        let slot = 4 + 2 * f.id;
        let name = f.ident.unraw().to_string();
        let as_field = field_check(f);
        quote!(let tv = #as_field::verify(tv, #name, #slot)?;)
    });
    let read = def.fields.iter().map(|f| {
        let name = &f.ident;
        let name_str = name.unraw().to_string();
        let ty = &f.ty;
        let slot = 4 + 2 * f.id;
        let as_field = field_check(f);
        if f.deprecated {
            // Never read or written; keeps its default.
            quote!(#name: <#ty as ::core::default::Default>::default(),)
        } else {
            quote! {
                #name: match #as_field::read(&table, #slot)? {
                    ::core::option::Option::Some(v) => v,
                    ::core::option::Option::None => #as_field::absent(#name_str)?,
                },
            }
        }
    });
    let mut by_id: Vec<&MessageField> = def.fields.iter().collect();
    by_id.sort_by_key(|f| f.id);
    let describe_fields = by_id.iter().map(|f| {
        let as_field = field_check(f);
        let name = f.ident.unraw().to_string();
        let id = f.id;
        let deprecated = if f.deprecated { ", deprecated" } else { "" };
        quote! {
            let ty = #as_field::fbs_type(schema);
            text.push_str(&::std::format!("  {}: {}{} (id: {}{});\n", #name, ty, #as_field::fbs_default(), #id, #deprecated));
        }
    });
    let fb = quote!(::framework::__private::flatbuffers);
    let name_str = ident.to_string();
    quote! {
        impl ::framework::message::Message for #ident {
            const TABLE: &'static str = #table;

            fn build_table<'b>(&self, fbb: &mut #fb::FlatBufferBuilder<'b>)
                -> #fb::WIPOffset<#fb::TableFinishedWIPOffset>
            {
                #(#prepare)*
                let start = fbb.start_table();
                #(#push)*
                fbb.end_table(start)
            }

            fn verify_table(v: &mut #fb::Verifier<'_, '_>, pos: usize)
                -> ::core::result::Result<(), #fb::InvalidFlatbuffer>
            {
                let tv = v.visit_table(pos)?;
                #(#verify)*
                tv.finish();
                ::core::result::Result::Ok(())
            }

            fn read_table(table: ::framework::__private::TableRef<'_>)
                -> ::core::result::Result<Self, ::framework::__private::DecodeError>
            {
                ::core::result::Result::Ok(Self { #(#read)* })
            }

            fn describe(schema: &mut ::framework::__private::Schema) {
                schema.add_table(#table, |schema| {
                    let mut text = ::std::format!("table {} {{\n", #table);
                    #(#describe_fields)*
                    text.push_str("}\n");
                    text
                });
            }
        }

        ::framework::__private::inventory::submit! {
            ::framework::__private::Registration {
                kind: ::framework::__private::Kind::Message(#table, <#ident as ::framework::message::Message>::describe),
                name: #name_str,
                file: ::core::file!(),
                line: ::core::line!(),
            }
        }
    }
}
