//! The `#[with_after]` attribute of [`after-runtime`](https://docs.rs/after-runtime).
//!
//! Depend on `after-runtime`, not on this crate: it re-exports the attribute and
//! provides the runtime the generated code calls into. The attribute rewrites each
//! `after! { ... }` block of an async axum handler into a task that runs after the
//! response has been sent; see the `after-runtime` documentation for the model.

mod args;
mod codegen;
mod expand;
mod fallback;
mod input;
mod order;
mod question_mark;
mod source;
mod tokens;
mod visit;

#[cfg(test)]
mod golden;

use proc_macro::TokenStream;

/// Lets an async axum handler register work with `after! { ... }` that runs after the
/// response has been sent.
///
/// See [`after_runtime::with_after`](https://docs.rs/after-runtime/latest/after_runtime/attr.with_after.html)
/// for the full documentation.
#[proc_macro_attribute]
pub fn with_after(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
