//! `#[with_after]` applied to a handler: the checks, then the rewrite of its body
//! (`visit.rs`) and the injected extractor (`codegen.rs`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemFn;
use syn::visit_mut::VisitMut;

use crate::args::Args;
use crate::visit::{Rewriter, user_bound};
use crate::{codegen, fallback, input, order, tokens};

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

    let mut func = match parse_handler(item.clone()) {
        Ok(func) => func,
        Err(tokens) => {
            let errors = errors.map(syn::Error::into_compile_error);
            return quote!(#tokens #errors);
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

/// The handler, or what to emit for an item that does not parse as one.
fn parse_handler(item: TokenStream) -> Result<ItemFn, TokenStream> {
    let error = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => return Ok(func),
        Err(error) => error,
    };
    if tokens::is_fn_with_body(&item) {
        // A syntax error in the handler: rustc reports it, once, where it is.
        return Err(unparsed(item));
    }
    let error = if tokens::is_fn(&item) {
        // A fn without a body, which rustc may accept (in a trait): say so here.
        error
    } else {
        syn::Error::new(
            tokens::first_span(&item),
            "`#[with_after]` can only be applied to an `async fn` handler",
        )
    };
    let error = error.into_compile_error();
    Err(quote!(#item #error))
}

/// A handler that does not parse, emitted as written for rustc to report where, with
/// each `after!` made quiet: rustc expands the ones its recovery keeps, and the
/// fallback `after!` would add "can only be used inside" errors to the syntax error.
/// The program does not compile either way, so no task is silently lost.
fn unparsed(item: TokenStream) -> TokenStream {
    tokens::map_after_calls(item, &mut |_, _| input::expanded(quote!({})))
}
