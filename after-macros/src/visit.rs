//! Finds the `after!` invocations of a handler body and rewrites each into a task
//! registration.
//!
//! What the visitor descends into is a decision, each with a test:
//! - blocks, `if`/`match` arms, loops and `let else`: yes, the registration runs
//!   wherever control flow reaches it (once per loop iteration).
//! - closures and async blocks: yes; they borrow the handler's hidden context, so they
//!   work when awaited or called inside the handler.
//! - the body of an `after!` block: yes; a nested `after!` registers a nested task
//!   with the running task's context (DESIGN S7).
//! - nested items (`fn`, `impl`, `mod`): no; they cannot see the handler's request, so
//!   an `after!` there reaches the fallback macro and its compile error.
//! - other macros' token streams: no; their grammar is theirs (see the crate docs).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, Ident, Item, Macro, Path, Stmt};

/// The name of the hidden binding that holds the request context, `&Context` in the
/// handler and `Context` inside a running task. Mixed-site hygiene keeps it out of
/// reach of user code.
pub(crate) fn context_ident() -> Ident {
    Ident::new("__after", Span::mixed_site())
}

/// Rewrites every `after!` it reaches.
pub(crate) struct Rewriter<'a> {
    krate: &'a Path,
    /// `headers` / `cookies` when the handler binds them itself (as parameters): then
    /// the user's variable wins and the block binds nothing under that name.
    user_bound: Vec<String>,
    /// Whether some block mentions `headers` or `cookies`, so the handler must capture
    /// the request's header map.
    pub(crate) captures_request: bool,
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(krate: &'a Path, user_bound: Vec<String>) -> Self {
        Rewriter {
            krate,
            user_bound,
            captures_request: false,
        }
    }

    /// Where the block uses the context variable `name`, unless the user bound it.
    fn uses(&self, tokens: &TokenStream, name: &str) -> Option<Span> {
        if self.user_bound.iter().any(|bound| bound == name) {
            return None;
        }
        mention(tokens, name)
    }

    fn is_after(&self, mac: &Macro) -> bool {
        let path = &mac.path;
        if path.is_ident("after") {
            return true;
        }
        // `after_runtime::after!` or `<crate = ...>::after!`.
        let Some(last) = path.segments.last() else {
            return false;
        };
        if last.ident != "after" || path.segments.len() < 2 {
            return false;
        }
        let prefix: Vec<String> = path
            .segments
            .iter()
            .take(path.segments.len() - 1)
            .map(|s| s.ident.to_string())
            .collect();
        let krate: Vec<String> = self
            .krate
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        prefix == ["after_runtime"] || prefix == krate
    }

    /// Replaces the macro's input with the registration the fallback `after!` passes
    /// through unchanged, so the user's `use after_runtime::after;` stays used.
    fn rewrite(&mut self, mac: &mut Macro) {
        let span = mac
            .path
            .segments
            .last()
            .map_or_else(Span::call_site, |s| s.ident.span());
        let tokens = std::mem::take(&mut mac.tokens);
        let headers = self.uses(&tokens, "headers");
        let cookies = self.uses(&tokens, "cookies");
        self.captures_request |= headers.is_some() || cookies.is_some();

        let block = match Block::parse_within.parse2(tokens.clone()) {
            Ok(stmts) => {
                let mut block = Block {
                    brace_token: Default::default(),
                    stmts,
                };
                self.visit_block_mut(&mut block);
                let stmts = &block.stmts;
                quote!(#(#stmts)*)
            }
            // Leave the tokens as they are so rustc reports the syntax error at the
            // user's code.
            Err(_) => tokens,
        };

        let krate = self.krate;
        let after = context_ident();
        let bind = |name: Option<Span>, getter: &str| {
            name.map(|name_span| {
                let name = Ident::new(getter, name_span);
                let getter = Ident::new(getter, span);
                quote_spanned! {span=>
                    #[allow(unused_variables)]
                    let #name = #krate::__private::Context::#getter(&#after);
                }
            })
        };
        let headers = bind(headers, "headers");
        let cookies = bind(cookies, "cookies");
        // `#[track_caller]` and `line!()` would report the attribute's line, the
        // outermost expansion; the span knows where this block was written.
        let start = span.start();
        let line = start.line as u32;
        let column = start.column as u32 + 1;
        let register = quote_spanned! {span=>
            #krate::__private::register(
                &#after,
                #krate::__private::Location::new(::core::file!(), #line, #column),
                move |#after: #krate::__private::Context| async move {
                    #headers
                    #cookies
                    #block
                },
            )
        };
        mac.tokens = quote!(@__after_expanded #register);
    }
}

impl VisitMut for Rewriter<'_> {
    fn visit_item_mut(&mut self, _item: &mut Item) {
        // Nested items cannot reach the handler's request; see the module docs.
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Macro(m) = expr
            && self.is_after(&m.mac)
        {
            self.rewrite(&mut m.mac);
            return;
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        if let Stmt::Macro(m) = stmt
            && self.is_after(&m.mac)
        {
            self.rewrite(&mut m.mac);
            return;
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }
}

/// The span of the first use of `name` as a variable in `tokens` (not as a field or
/// method after a `.`), looking inside groups and inline format arguments
/// (`"{headers:?}"`).
fn mention(tokens: &TokenStream, name: &str) -> Option<Span> {
    let mut after_dot = false;
    let inline = [format!("{{{name}}}"), format!("{{{name}:")];
    for tree in tokens.clone() {
        match &tree {
            TokenTree::Ident(ident) if !after_dot && ident == name => return Some(ident.span()),
            TokenTree::Literal(lit) => {
                let text = lit.to_string();
                if text.starts_with('"') && inline.iter().any(|i| text.contains(i.as_str())) {
                    return Some(lit.span());
                }
            }
            TokenTree::Group(group) => {
                if let Some(span) = mention(&group.stream(), name) {
                    return Some(span);
                }
            }
            _ => {}
        }
        after_dot = matches!(&tree, TokenTree::Punct(p) if p.as_char() == '.');
    }
    None
}
