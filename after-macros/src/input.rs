//! The `after!` grammar:
//!
//! ```text
//! after! { statements }
//! after!(clone(a, b, ...) { statements })
//! after!(name = "literal", timeout = expr, { statements })
//! after!(name = "literal", timeout = expr, clone(a, b, ...) { statements })
//! ```
//!
//! Options come first, each followed by a comma, in any order, each at most once.
//! Any delimiter around the input works, as for any macro. A path ending in
//! `::after!` is an `after!` too. The statements are parsed here only as far as the
//! capture list needs; the rewrite parses them as a block.

use proc_macro2::{Group, Spacing, TokenStream, TokenTree};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Macro, Token};

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

/// The input of one `after!`: options, an optional capture list, then the block's
/// statements.
pub(crate) struct AfterInput {
    /// `name = "..."` and `timeout = ...`, if given.
    pub(crate) options: Options,
    /// The names in `clone(...)`, cloned into the task before it moves the rest.
    pub(crate) clones: Vec<Ident>,
    /// The block's statements, not parsed yet.
    pub(crate) body: TokenStream,
}

/// The task's options, as written.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) name: Option<LitStr>,
    pub(crate) timeout: Option<Expr>,
}

impl Options {
    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_none() && self.timeout.is_none()
    }

    /// Parses `key = value,` pairs while the input starts with one.
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options::default();
        while starts_with_option(input) {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let duplicate = || {
                syn::Error::new(
                    key.span(),
                    format!("the `{key}` option is given twice; keep one"),
                )
            };
            if key == "name" {
                if options.name.is_some() {
                    return Err(duplicate());
                }
                let name = input.parse::<LitStr>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "a task's `name` is a string literal, as in `name = \"welcome-mail\"`: \
                         names are labels of logs and metrics, so they are fixed in the code",
                    )
                })?;
                options.name = Some(name);
            } else if key == "timeout" {
                if options.timeout.is_some() {
                    return Err(duplicate());
                }
                options.timeout = Some(input.parse()?);
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown `after!` option `{key}`; the options are \
                         `name = \"...\"` and `timeout = <Duration>`, each followed by a comma"
                    ),
                ));
            }
            input.parse::<Token![,]>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected `,` after the option, as in \
                     `after!(name = \"welcome-mail\", { ... })`",
                )
            })?;
        }
        Ok(options)
    }
}

/// Whether the input starts with an option, `key = value,`, rather than a statement
/// such as an assignment (`count = 1;`), which ends in `;` instead of `,`.
fn starts_with_option(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    if fork.parse::<Ident>().is_err() {
        return false;
    }
    // A lone `=`: not `==` or `=>`.
    let single_eq = fork
        .cursor()
        .punct()
        .is_some_and(|(punct, _)| punct.as_char() == '=' && punct.spacing() == Spacing::Alone);
    single_eq
        && fork.parse::<Token![=]>().is_ok()
        && fork.parse::<Expr>().is_ok()
        && fork.peek(Token![,])
}

impl Parse for AfterInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let options = Options::parse(input)?;
        if !options.is_empty() && input.peek(syn::token::Brace) {
            let body;
            syn::braced!(body in input);
            let body: TokenStream = body.parse()?;
            if !input.is_empty() {
                return Err(input.error("unexpected tokens after the `after!` block"));
            }
            return Ok(AfterInput {
                options,
                clones: Vec::new(),
                body,
            });
        }
        // `after!(clone(a, b) { ... })`: the only form with a leading `clone(...)`
        // followed by a braced block and nothing else.
        let fork = input.fork();
        let capture_list =
            fork.parse::<Ident>().is_ok_and(|i| i == "clone") && fork.peek(syn::token::Paren) && {
                let _ = fork.parse::<Group>();
                fork.peek(syn::token::Brace)
            };
        if !capture_list {
            if !options.is_empty() {
                return Err(input.error(
                    "expected the block after the options: `{ ... }`, or `clone(a, b) { ... }`",
                ));
            }
            return Ok(AfterInput {
                options,
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
            options,
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
