//! `#[with_after]` applied to a handler: the checks, then the rewrite of its body
//! (`visit.rs`) and the injected extractor (`codegen.rs`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemFn;
use syn::visit_mut::VisitMut;

use crate::args::Args;
use crate::tokens::{first_span, is_fn};
use crate::visit::{Rewriter, user_bound};
use crate::{codegen, fallback, order};

/// Expands `#[with_after(args)] item`. On error the item is still emitted, rewritten
/// as far as possible, so one mistake gives one error and IDEs keep working.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };

    let args = Args::parse(args).unwrap_or_else(|e| {
        push(e);
        Args::parse(TokenStream::new()).expect("empty arguments parse")
    });
    if args.not_rewritten {
        return fallback::not_rewritten(item);
    }

    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let error = if is_fn(&item) {
                // A syntax error inside a fn: rustc reports it at its place.
                e
            } else {
                syn::Error::new(
                    first_span(&item),
                    "`#[with_after]` can only be applied to an `async fn` handler",
                )
            };
            let error = error.into_compile_error();
            return quote!(#item #error);
        }
    };

    if order::below_debug_handler(&func) {
        // Left as written: `debug_handler`'s checks call it with the written
        // arguments, and its `after!` blocks stay quiet (see `order.rs`).
        let error = syn::Error::new(Span::call_site(), order::MOVE_ABOVE_DEBUG_HANDLER);
        let error = error.into_compile_error();
        return quote!(#item #error);
    }

    if func.sig.asyncness.is_none() {
        push(syn::Error::new_spanned(
            func.sig.fn_token,
            "`#[with_after]` requires an `async fn`; add `async` before `fn`",
        ));
    }

    let user_bound = user_bound(&func);
    let mut rewriter = Rewriter::new(&args.krate, user_bound);
    rewriter.visit_block_mut(&mut func.block);
    if let Some(error) = rewriter.errors.take() {
        push(error);
    }

    codegen::inject_scope(&mut func, &args.krate, rewriter.reads_headers);

    let errors = errors.map(syn::Error::into_compile_error);
    quote!(#func #errors)
}
