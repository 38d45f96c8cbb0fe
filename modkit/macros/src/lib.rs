//! `#[modkit::interface]`: reads a module's trait and writes what makes it callable from another
//! process — a client that implements the same trait over HTTP, and the internal endpoint that
//! serves it. See the `modkit` crate for what the generated code stands on.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType, TraitItem,
    TraitItemFn, Type, parse_macro_input, spanned::Spanned,
};

/// Makes a module's trait callable across processes.
///
/// ```ignore
/// #[modkit::interface(path = "/internal/users")]
/// #[async_trait::async_trait]
/// pub trait UsersApi: Send + Sync {
///     /// Public profiles of `ids`.
///     #[idempotent]
///     async fn public_profiles(&self, ids: &[Uuid]) -> Result<Vec<Profile>, UsersApiError>;
/// }
/// ```
///
/// writes, beside the trait:
/// - `UsersApiRemote`, which implements `UsersApi` by calling another process through a
///   `modkit::Remote` (compiled only with modkit's `remote` feature);
/// - `serve_users_api(cfg, service)`, which mounts `POST <path>/<method>` for each method on an
///   actix-web `ServiceConfig`, behind the service credential, calling `service`.
///
/// Every method is `async`, takes `&self` and arguments that serialize (a borrowed `&[T]`,
/// `&str` or `&T` travels as `Vec<T>`, `String` or `T`), and returns `Result<T, E>` where `T`
/// deserializes and `E: From<modkit::CallError> + Display`. `#[idempotent]` marks a method the
/// client may send again after it reached the other side (a read); others are retried only
/// when they never reached it.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut path = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("path") {
            path = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error("expected `path = \"/internal/...\"`"))
        }
    });
    parse_macro_input!(attr with parser);
    let mut item = parse_macro_input!(item as ItemTrait);
    let Some(path) = path else {
        return syn::Error::new(Span::call_site(), "missing `path = \"/internal/...\"`")
            .to_compile_error()
            .into();
    };
    match expand(&mut item, &path) {
        Ok(generated) => quote!(#item #generated).into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// One method of the interface, as the generated code needs it.
struct Method {
    name: Ident,
    idempotent: bool,
    /// Each argument: its name, its type as written, the owned type it travels as.
    args: Vec<(Ident, Type, Type)>,
    ok: Type,
    err: Type,
}

fn expand(item: &mut ItemTrait, path: &LitStr) -> syn::Result<Tokens> {
    let mut methods = Vec::new();
    for entry in &mut item.items {
        let TraitItem::Fn(method) = entry else {
            continue;
        };
        let idempotent = method.attrs.iter().any(|a| a.path().is_ident("idempotent"));
        method.attrs.retain(|a| !a.path().is_ident("idempotent"));
        methods.push(read_method(method, idempotent)?);
    }
    let trait_name = &item.ident;
    let vis = &item.vis;
    let remote = format_ident!("{}Remote", trait_name);
    let serve = format_ident!("serve_{}", snake_case(&trait_name.to_string()));
    let client_methods = methods.iter().map(|m| {
        let name = &m.name;
        let route = format!("{}/{}", path.value().trim_end_matches('/'), name);
        let idempotent = m.idempotent;
        let (ok, err) = (&m.ok, &m.err);
        let params = m.args.iter().map(|(arg, ty, _)| quote!(#arg: #ty));
        let values = m.args.iter().map(|(arg, ..)| quote!(#arg));
        quote! {
            async fn #name(&self, #(#params),*) -> ::core::result::Result<#ok, #err> {
                let arguments = (#(#values,)*);
                ::core::result::Result::Ok(
                    self.remote.call(#route, &arguments, #idempotent).await?,
                )
            }
        }
    });
    let routes = methods.iter().map(|m| {
        let name = &m.name;
        let route = format!("{}/{}", path.value().trim_end_matches('/'), name);
        let owned = m.args.iter().map(|(_, _, owned)| owned);
        let bindings: Vec<Ident> = (0..m.args.len()).map(|i| format_ident!("a{i}")).collect();
        let passed = m.args.iter().zip(&bindings).map(|((_, ty, _), binding)| {
            if matches!(ty, Type::Reference(_)) {
                quote!(&#binding)
            } else {
                quote!(#binding)
            }
        });
        quote! {
            {
                let service = service.clone();
                cfg.route(
                    #route,
                    ::modkit::endpoint::post(move |request: ::modkit::endpoint::HttpRequest,
                                                   body: ::modkit::endpoint::Bytes| {
                        let service = service.clone();
                        async move {
                            if let ::core::result::Result::Err(refused) =
                                ::modkit::endpoint::authorize(&request)
                            {
                                return refused.into_response();
                            }
                            let (#(#bindings,)*): (#(#owned,)*) =
                                match ::modkit::endpoint::decode(&body) {
                                    ::core::result::Result::Ok(arguments) => arguments,
                                    ::core::result::Result::Err(refused) => {
                                        return refused.into_response();
                                    }
                                };
                            ::modkit::endpoint::respond(service.#name(#(#passed),*).await)
                        }
                    }),
                );
            }
        }
    });
    let doc_remote = format!(
        "[`{trait_name}`] in another process, over HTTP (generated by `modkit::interface`)."
    );
    let doc_serve = format!(
        "Mounts the internal endpoint of [`{trait_name}`] (`POST {}/<method>`, service \
         credential required), answering with `service` (generated by `modkit::interface`).",
        path.value()
    );
    Ok(quote! {
        ::modkit::remote_only! {
            #[doc = #doc_remote]
            #vis struct #remote {
                remote: ::std::sync::Arc<::modkit::Remote>,
            }

            impl #remote {
                /// Calls the module through `remote`.
                #vis fn new(remote: ::std::sync::Arc<::modkit::Remote>) -> Self {
                    Self { remote }
                }
            }

            #[::modkit::async_trait]
            impl #trait_name for #remote {
                #(#client_methods)*
            }
        }

        #[doc = #doc_serve]
        #vis fn #serve(
            cfg: &mut ::modkit::endpoint::ServiceConfig,
            service: ::std::sync::Arc<dyn #trait_name>,
        ) {
            #(#routes)*
        }
    })
}

fn read_method(method: &TraitItemFn, idempotent: bool) -> syn::Result<Method> {
    let signature = &method.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new(
            signature.span(),
            "interface methods are `async fn`",
        ));
    }
    let mut inputs = signature.inputs.iter();
    if !matches!(inputs.next(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none())
    {
        return Err(syn::Error::new(
            signature.span(),
            "interface methods take `&self`",
        ));
    }
    let mut args = Vec::new();
    for input in inputs {
        let FnArg::Typed(typed) = input else {
            unreachable!("only the first argument can be a receiver");
        };
        let Pat::Ident(name) = &*typed.pat else {
            return Err(syn::Error::new(
                typed.pat.span(),
                "name each argument plainly",
            ));
        };
        let ty = (*typed.ty).clone();
        args.push((name.ident.clone(), ty.clone(), owned(&ty)?));
    }
    let ReturnType::Type(_, output) = &signature.output else {
        return Err(syn::Error::new(
            signature.span(),
            "interface methods return `Result<T, E>`",
        ));
    };
    let (ok, err) = result_types(output)?;
    Ok(Method {
        name: signature.ident.clone(),
        idempotent,
        args,
        ok,
        err,
    })
}

/// The type an argument travels as: `&[T]` as `Vec<T>`, `&str` as `String`, `&T` as `T`.
fn owned(ty: &Type) -> syn::Result<Type> {
    let Type::Reference(reference) = ty else {
        return Ok(ty.clone());
    };
    if reference.mutability.is_some() {
        return Err(syn::Error::new(ty.span(), "arguments can not be `&mut`"));
    }
    Ok(match &*reference.elem {
        Type::Slice(slice) => {
            let element = &slice.elem;
            syn::parse_quote!(::std::vec::Vec<#element>)
        }
        Type::Path(path) if path.path.is_ident("str") => syn::parse_quote!(::std::string::String),
        other => other.clone(),
    })
}

/// `T` and `E` of a `Result<T, E>`.
fn result_types(ty: &Type) -> syn::Result<(Type, Type)> {
    let wrong = || syn::Error::new(ty.span(), "interface methods return `Result<T, E>`");
    let Type::Path(path) = ty else {
        return Err(wrong());
    };
    let last = path.path.segments.last().ok_or_else(wrong)?;
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return Err(wrong());
    };
    let mut types = arguments.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (last.ident == "Result", types.next(), types.next()) {
        (true, Some(ok), Some(err)) => Ok((ok, err)),
        _ => Err(wrong()),
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
