//! An `after!` that no `#[with_after]` rewrote.
//!
//! The runtime's fallback `macro_rules! after` hands such a block here, as
//! `#[with_after(__not_rewritten)] fn __after_not_rewritten() { __after_not_rewritten! { block } }`,
//! so the error can depend on where the block is written.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote_spanned;

use crate::order;
use crate::source;
use crate::visit::IN_NESTED_ITEM;

/// The error for an `after!` outside any `#[with_after]` handler.
const NOT_IN_A_HANDLER: &str = "`after!` can only be used inside an `async fn` marked \
    `#[with_after]`; add `#[after_runtime::with_after]` to the handler (above \
    `#[axum::debug_handler]`), or call `after_runtime::after(future)` instead";

/// The compile error for the block in `item`, or nothing directly in a handler
/// written below `#[axum::debug_handler]`, whose `#[with_after]` reports that.
pub(crate) fn not_rewritten(item: TokenStream) -> TokenStream {
    let error = match first_block_token(item) {
        Some(span) => error_at(span),
        None => Some(NOT_IN_A_HANDLER),
    };
    error.map_or_else(
        TokenStream::new,
        |error| quote_spanned!(Span::call_site()=> ::core::compile_error! { #error }),
    )
}

/// The error for a block whose first token is at `span`, from the `fn`s around it
/// in the source.
fn error_at(span: Span) -> Option<&'static str> {
    let at = span.start();
    let mut around = source::fns_in_file_of(span);
    around.retain(|item| item.contains(at));
    let Some((innermost, outer)) = around.split_last() else {
        return Some(NOT_IN_A_HANDLER);
    };
    if order::written_below_debug_handler(innermost) {
        return None;
    }
    let in_handler = outer
        .iter()
        .any(|item| item.attrs.iter().any(|attr| attr.name == "with_after"));
    Some(if in_handler {
        IN_NESTED_ITEM
    } else {
        NOT_IN_A_HANDLER
    })
}

/// The span of the block's first token: the last group of `item` is the fn's body,
/// whose last group is the inner macro's input.
fn first_block_token(item: TokenStream) -> Option<Span> {
    let last_group = |tokens: TokenStream| {
        tokens.into_iter().last().and_then(|tree| match tree {
            TokenTree::Group(group) => Some(group.stream()),
            _ => None,
        })
    };
    let block = last_group(last_group(item)?)?;
    block.into_iter().next().map(|tree| tree.span())
}
