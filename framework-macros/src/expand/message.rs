//! Expansion of `#[derive(Message)]`: quote only.
//!
//! Code about one field's (or union member's) type spans exactly that type (see
//! [`TypeSpan`]), so a type that is no `Field` (or no `Message`) yields one error,
//! at the type.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

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
    match def.expect("checked") {
        MessageDef::Table(t) => table(&t),
        MessageDef::Enum(e) => enumeration(&e),
        MessageDef::Union(u) => union(&u),
    }
}

/// The `inventory` registration that puts the type in `registry::export_schema`.
fn registration(ident: &syn::Ident, name: &str, describe: TokenStream) -> TokenStream {
    let name_str = ident.to_string();
    quote! {
        ::framework::__private::inventory::submit! {
            ::framework::__private::Registration {
                kind: ::framework::__private::Kind::Message(#name, #describe),
                name: #name_str,
                file: ::core::file!(),
                line: ::core::line!(),
            }
        }
    }
}

/// Where code about one field's (or member's) type goes: rustc reports a failed
/// bound at the expression that needs it, whose span runs from its first token
/// to its last. Code about a type starts at the type's first token and ends at
/// its last, so every error about one bad type has the type's own span; those
/// errors are identical and rustc shows one.
#[derive(Clone, Copy)]
struct TypeSpan {
    first: Span,
    last: Span,
}

impl TypeSpan {
    fn of(ty: &Type) -> Self {
        let mut last = ty.span();
        for token in ty.to_token_stream() {
            last = match token {
                TokenTree::Group(g) => g.span_close(),
                other => other.span(),
            };
        }
        TypeSpan {
            first: ty.span(),
            last,
        }
    }

    /// `<ty as trait_>::item`.
    fn path(self, ty: &Type, trait_: &TokenStream, item: &str) -> TokenStream {
        let head = quote_spanned!(self.first=> <#ty as #trait_>::);
        let item = Ident::new(item, self.last);
        quote!(#head #item)
    }

    /// `<ty as trait_>::method(args)`.
    fn call(self, ty: &Type, trait_: &TokenStream, method: &str, args: TokenStream) -> TokenStream {
        let path = self.path(ty, trait_, method);
        let mut args = Group::new(Delimiter::Parenthesis, args);
        args.set_span(self.last);
        quote!(#path #args)
    }

    /// `tokens` in a group spanned at the type's end (`{ ... }`).
    fn braces(self, tokens: TokenStream) -> Group {
        let mut group = Group::new(Delimiter::Brace, tokens);
        group.set_span(self.last);
        group
    }
}

fn table(def: &TableDef) -> TokenStream {
    let ident = &def.ident;
    let table = &def.table;
    let live: Vec<&MessageField> = def.fields.iter().filter(|f| !f.deprecated).collect();
    let slot = |f: &MessageField| 4 + 2 * f.id;
    let field = quote!(::framework::__private::Field);
    let var = |f: &MessageField| format_ident!("__f_{}", f.ident.unraw(), span = f.span);

    let prepare = live.iter().map(|f| {
        let (ts, name, var) = (TypeSpan::of(&f.ty), &f.ident, var(f));
        let call = ts.call(&f.ty, &field, "prepare", quote!(&self.#name, fbb));
        let end = quote_spanned!(ts.last=> ;);
        quote_spanned!(ts.first=> let #var = #call #end)
    });
    let push = live.iter().map(|f| {
        let (ts, slot, var) = (TypeSpan::of(&f.ty), slot(f), var(f));
        let call = ts.call(&f.ty, &field, "push", quote!(fbb, #slot, #var));
        let end = quote_spanned!(ts.last=> ;);
        quote!(#call #end)
    });
    let put = live.iter().map(|f| {
        let (ts, name, slot) = (TypeSpan::of(&f.ty), &f.ident, slot(f));
        let call = ts.call(&f.ty, &field, "put", quote!(&self.#name, table, #slot));
        let end = quote_spanned!(ts.last=> ;);
        quote!(#call #end)
    });
    let verify = live.iter().map(|f| {
        let (ts, slot) = (TypeSpan::of(&f.ty), slot(f));
        let name = f.ident.unraw().to_string();
        let call = ts.call(&f.ty, &field, "verify", quote!(tv, #name, #slot));
        let end = quote_spanned!(ts.last=> ?;);
        quote_spanned!(ts.first=> let tv = #call #end)
    });
    let flat = live.iter().map(|f| {
        let ts = TypeSpan::of(&f.ty);
        let flat = ts.path(&f.ty, &field, "FLAT");
        quote!(&& #flat)
    });
    let read = def.fields.iter().map(|f| {
        let (ts, name, slot) = (TypeSpan::of(&f.ty), &f.ident, slot(f));
        if f.deprecated {
            // Never read or written; keeps its default.
            let ty = &f.ty;
            quote_spanned!(ts.first=> #name: <#ty as ::core::default::Default>::default(),)
        } else {
            let name_str = name.unraw().to_string();
            let read = ts.call(&f.ty, &field, "read", quote!(&table, #slot));
            let absent = ts.call(&f.ty, &field, "absent", quote!(#name_str));
            let question = quote_spanned!(ts.last=> ?);
            let arms = ts.braces(quote! {
                ::core::option::Option::Some(v) => v,
                ::core::option::Option::None => #absent #question,
            });
            quote_spanned!(ts.first=> #name: match #read #question #arms,)
        }
    });
    let mut by_id: Vec<&MessageField> = def.fields.iter().collect();
    by_id.sort_by_key(|f| f.id);
    let describe_fields = by_id.iter().map(|f| {
        let (ts, id) = (TypeSpan::of(&f.ty), f.id);
        let name = f.ident.unraw().to_string();
        let deprecated = if f.deprecated { ", deprecated" } else { "" };
        let fbs_type = ts.call(&f.ty, &field, "fbs_type", quote!(schema));
        let fbs_default = ts.call(&f.ty, &field, "fbs_default", quote!());
        let end = quote_spanned!(ts.last=> ;);
        quote! {
            let ty = #fbs_type #end
            let default = #fbs_default #end
            text.push_str(&::std::format!("  {}: {}{} (id: {}{});\n", #name, ty, default, #id, #deprecated));
        }
    });
    // A union takes two ids and must be marked, so the derive numbers it right.
    let id_checks = def.fields.iter().map(|f| {
        let ts = TypeSpan::of(&f.ty);
        let (ids, message) = if f.union {
            (2u16, format!("field `{}` is marked #[fbs(union)], but its type is no union (a #[derive(Message)] enum of tables): remove the mark", f.ident))
        } else {
            (1u16, format!("field `{}` is a union, which takes two field ids (its type's and its value's): mark it #[fbs(union)]", f.ident))
        };
        let ids_of = ts.path(&f.ty, &field, "IDS");
        quote_spanned! {ts.first=>
            const _: () = ::core::assert!(#ids_of == #ids, #message);
        }
    });
    let fb = quote!(::framework::__private::flatbuffers);
    let register = registration(
        ident,
        table,
        quote!(<#ident as ::framework::message::Message>::describe),
    );
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

            const FLAT: bool = true #(#flat)*;

            fn write_flat(&self, table: &mut ::framework::message::FlatTable) {
                #(#put)*
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

        impl ::framework::message::FieldKind for #ident {
            type Kind = ::framework::message::TableKind;
        }

        #(#id_checks)*

        #register
    }
}

fn enumeration(def: &EnumDef) -> TokenStream {
    let ident = &def.ident;
    let name = &def.name;
    let repr = format_ident!("{}", def.repr.rust());
    let variants: Vec<&syn::Ident> = def.variants.iter().map(|v| &v.ident).collect();
    let names = def.variants.iter().map(|v| &v.name);
    let values: Vec<Literal> = def
        .variants
        .iter()
        .map(|v| Literal::i128_unsuffixed(v.value))
        .collect();
    // As `Enum::default_repr` computes it, without a search per encode.
    let default = match def.variants.iter().find(|v| v.value == 0) {
        Some(_) => 0,
        None => def.variants.iter().map(|v| v.value).min().unwrap_or(0),
    };
    let default = Literal::i128_unsuffixed(default);
    let register = registration(
        ident,
        name,
        quote!(<#ident as ::framework::message::Enum>::describe),
    );
    quote! {
        impl ::framework::message::Enum for #ident {
            const NAME: &'static str = #name;
            type Repr = #repr;
            const VARIANTS: &'static [(&'static str, #repr)] = &[#((#names, #values)),*];

            fn to_repr(&self) -> #repr {
                match self {
                    #(Self::#variants => #values,)*
                }
            }

            fn from_repr(repr: #repr) -> ::core::option::Option<Self> {
                match repr {
                    #(#values => ::core::option::Option::Some(Self::#variants),)*
                    _ => ::core::option::Option::None,
                }
            }

            fn default_repr() -> #repr {
                #default
            }
        }

        impl ::framework::message::FieldKind for #ident {
            type Kind = ::framework::message::EnumKind;
        }

        #register
    }
}

fn union(def: &UnionDef) -> TokenStream {
    let ident = &def.ident;
    let name = &def.name;
    let message = quote!(::framework::message::Message);
    let tags = (1..=def.variants.len()).map(|t| Literal::u8_suffixed(t as u8));
    let members = def.variants.iter().map(|v| {
        let (ts, name) = (TypeSpan::of(&v.ty), &v.name);
        let table = ts.path(&v.ty, &message, "TABLE");
        let describe = ts.path(&v.ty, &message, "describe");
        quote! {
            ::framework::message::UnionMember { name: #name, table: #table, describe: #describe }
        }
    });
    let build = def.variants.iter().zip(tags.clone()).map(|(v, tag)| {
        let (ts, variant) = (TypeSpan::of(&v.ty), &v.ident);
        let call = ts.call(&v.ty, &message, "build_table", quote!(m, fbb));
        quote!(Self::#variant(m) => (#tag, #call),)
    });
    let verify = def.variants.iter().zip(tags.clone()).map(|(v, tag)| {
        let call = TypeSpan::of(&v.ty).call(&v.ty, &message, "verify_table", quote!(v, pos));
        quote!(#tag => #call,)
    });
    let read = def.variants.iter().zip(tags).map(|(v, tag)| {
        let (ts, variant) = (TypeSpan::of(&v.ty), &v.ident);
        let call = ts.call(&v.ty, &message, "read_table", quote!(table));
        let question = quote_spanned!(ts.last=> ?);
        quote!(#tag => ::core::result::Result::Ok(Self::#variant(#call #question)),)
    });
    let fb = quote!(::framework::__private::flatbuffers);
    let register = registration(
        ident,
        name,
        quote!(<#ident as ::framework::message::Union>::describe),
    );
    quote! {
        impl ::framework::message::Union for #ident {
            const NAME: &'static str = #name;
            const MEMBERS: &'static [::framework::message::UnionMember] = &[#(#members),*];

            fn build_member(&self, fbb: &mut #fb::FlatBufferBuilder<'_>)
                -> (u8, #fb::WIPOffset<#fb::TableFinishedWIPOffset>)
            {
                match self {
                    #(#build)*
                }
            }

            fn verify_member(member: u8, v: &mut #fb::Verifier<'_, '_>, pos: usize)
                -> ::core::result::Result<(), #fb::InvalidFlatbuffer>
            {
                match member {
                    #(#verify)*
                    _ => ::core::result::Result::Ok(()),
                }
            }

            fn read_member(member: u8, table: ::framework::__private::TableRef<'_>)
                -> ::core::result::Result<Self, ::framework::__private::DecodeError>
            {
                match member {
                    #(#read)*
                    _ => ::core::result::Result::Err(::framework::__private::DecodeError::UnknownVariant {
                        ty: #name,
                        value: ::core::convert::From::from(member),
                    }),
                }
            }
        }

        impl ::framework::message::FieldKind for #ident {
            type Kind = ::framework::message::UnionKind;
        }

        #register
    }
}
