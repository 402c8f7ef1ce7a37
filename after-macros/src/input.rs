//! The `after!` grammar:
//!
//! ```text
//! after! { statements }
//! after!(clone(a, b, ...) { statements })
//! ```
//!
//! Any delimiter around the input works, as for any macro. A path ending in
//! `::after!` is an `after!` too. The statements are parsed here only as far as the
//! capture list needs; the rewrite parses them as a block.

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Macro, Token};

/// `after!`, or a path ending in `::after!` (`after_runtime::after!`, or the runtime
/// re-exported under another name).
pub(crate) fn is_after(mac: &Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|last| last.ident == "after")
}

/// The input that makes the fallback `after!` pass `registration` through unchanged.
/// The rewrite keeps the `after!` call around its registration, so the user's
/// `use after_runtime::after;` stays used.
pub(crate) fn expanded(registration: TokenStream) -> TokenStream {
    quote!(@__after_expanded #registration)
}

/// Whether an `after!` input is already a registration (or a quiet placeholder):
/// then there is nothing to rewrite.
pub(crate) fn is_expanded(tokens: &TokenStream) -> bool {
    let mut trees = tokens.clone().into_iter();
    matches!(trees.next(), Some(TokenTree::Punct(p)) if p.as_char() == '@')
        && matches!(trees.next(), Some(TokenTree::Ident(i)) if i == "__after_expanded")
}

/// The input of one `after!`: an optional capture list, then the block's statements.
pub(crate) struct AfterInput {
    /// The names in `clone(...)`, cloned into the task before it moves the rest.
    pub(crate) clones: Vec<Ident>,
    /// The block's statements, not parsed yet.
    pub(crate) body: TokenStream,
}

impl Parse for AfterInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `after!(clone(a, b) { ... })`: the only form with a leading `clone(...)`
        // followed by a braced block and nothing else.
        let fork = input.fork();
        let capture_list =
            fork.parse::<Ident>().is_ok_and(|i| i == "clone") && fork.peek(syn::token::Paren) && {
                let _ = fork.parse::<Group>();
                fork.peek(syn::token::Brace)
            };
        if !capture_list {
            return Ok(AfterInput {
                clones: Vec::new(),
                body: input.parse()?,
            });
        }
        input.parse::<Ident>()?;
        let list;
        syn::parenthesized!(list in input);
        let names = Punctuated::<Ident, Token![,]>::parse_terminated(&list).map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected variable names separated by commas, as in `after!(clone(db, mailer) { ... })`",
            )
        })?;
        let body;
        syn::braced!(body in input);
        let body: TokenStream = body.parse()?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the `after!` block"));
        }
        Ok(AfterInput {
            clones: names.into_iter().collect(),
            body,
        })
    }
}

/// The braced block at the end of an `after!` input that did not parse, if any: the
/// rewrite still mentions its variables, so the parse error is the only diagnostic.
pub(crate) fn trailing_block(tokens: TokenStream) -> Option<TokenTree> {
    tokens.into_iter().last().filter(
        |t| matches!(t, TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace),
    )
}
