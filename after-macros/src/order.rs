//! `#[with_after]` written below `#[axum::debug_handler]`.
//!
//! In that order `debug_handler` expands first. It emits the handler again, still
//! marked `#[with_after]`, with checks: one nests another marked copy in a function
//! that calls it with the written arguments, one copies the body into a function of
//! its own that no `#[with_after]` sees. With the hidden extractor injected, the call
//! has one argument too few, and each `after!` in the body copy reaches the fallback
//! macro. So `#[with_after]` leaves such a handler as written and reports the order
//! once, and the fallback `after!` stays quiet inside it.
//!
//! An attribute macro does not see the attributes above it, so the order is read
//! from the source file. `#[with_after]` only looks when a macro above re-emitted
//! the handler (a re-emitted group's opening brace spans the whole group), so
//! handlers as written cost no file read.

use proc_macro2::Span;
use syn::ItemFn;

use crate::source::{self, Attr, FnItem};

/// The error `#[with_after]` reports below `#[axum::debug_handler]`.
pub(crate) const MOVE_ABOVE_DEBUG_HANDLER: &str = "move `#[with_after]` above \
    `#[axum::debug_handler]`: below it, `debug_handler` copies the handler before its \
    `after!` blocks are rewritten";

/// Whether `func`, marked with the attribute being expanded, is written below
/// `#[debug_handler]`.
pub(crate) fn below_debug_handler(func: &ItemFn) -> bool {
    let brace = func.block.brace_token.span;
    let re_emitted = brace.open().end() == brace.join().end();
    if !re_emitted {
        return false;
    }
    let attribute = Span::call_site();
    let at = attribute.start();
    source::fns_in_file_of(attribute).iter().any(|item| {
        let Some(this) = item.attrs.iter().position(|attr| attr.at == at) else {
            return false;
        };
        item.attrs[..this].iter().any(is_debug_handler)
    })
}

/// Whether `item` is written with `#[with_after]` below `#[debug_handler]`, as far as
/// the attributes' names tell.
pub(crate) fn written_below_debug_handler(item: &FnItem) -> bool {
    let debug_handler = item.attrs.iter().position(is_debug_handler);
    let with_after = item
        .attrs
        .iter()
        .rposition(|attr| attr.name == "with_after");
    matches!((debug_handler, with_after), (Some(d), Some(w)) if d < w)
}

fn is_debug_handler(attr: &Attr) -> bool {
    attr.name == "debug_handler"
}
