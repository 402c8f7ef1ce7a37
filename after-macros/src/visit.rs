//! The traversal of a handler's body: finds each `after!` and has it rewritten into a
//! task registration (`codegen.rs`), and works out which names the user binds.
//!
//! What the traversal descends into is decided here, and only here; each decision
//! has a test:
//! - blocks, `if`/`match` arms, loops and `let else`: yes; the registration runs
//!   wherever control flow reaches it (once per loop iteration).
//! - closures and async blocks: yes. A `move` closure or `async move` block that
//!   contains an `after!` gets its own clone of the request context, so it may
//!   outlive the handler (`tokio::spawn(async move { after! { ... } })`); a task
//!   registered after the response is finished starts at once. Such code may run on
//!   another thread (`std::thread::scope`, rayon): it registers through the context
//!   it holds, which the hidden extractor took while extracting, never through the
//!   layer's task-local.
//! - the body of an `after!` block: yes; a nested `after!` registers a nested task
//!   with the running task's context.
//! - other macros' token streams (`tokio::select!` arms, `vec![...]`): yes, by
//!   tokens: every `after! { ... }` in them is rewritten in place, and the host macro
//!   decides whether it is in a place an expression may be.
//! - nested items (`fn`, `impl`, `mod`): no; they cannot see the handler's request.
//!   Each `after!` there becomes a compile error that says to call
//!   `after_runtime::after(future)` instead; a nested item marked `#[with_after]` is
//!   left to its own attribute.
//!
//! Inside a block, `headers` and `cookies` are the request's unless the user binds
//! the name: as a parameter, or in any pattern of the body outside the block
//! (`let`, `let else`, closure parameters, `for`, `if let`, `while let`, `match`
//! arms, in tuples and structs), in the input of another macro that holds the block
//! (`tokio::select!`), or in an enclosing `after!` block. Then the block binds
//! nothing under that name and rustc resolves it as written: to the user's variable
//! where it is in scope, and as an unknown name where it is not, never silently to
//! the request's. Working out which binding is in scope where would take rustc's
//! name resolution.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::parse::{Parse, Parser};
use syn::visit::Visit;
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, FnArg, Item, ItemFn, Macro, Path, Stmt};

use crate::codegen::{self, Registration};
use crate::input::{self, AfterInput, is_after};
use crate::question_mark;
use crate::tokens::{self, mention};

/// Rewrites every `after!` it reaches.
pub(crate) struct Rewriter<'a> {
    krate: &'a Path,
    /// `headers` / `cookies` where the user binds them around the visitor (see the
    /// module docs): then the user's variable wins and a block binds nothing under
    /// that name. Grows while visiting an `after!` block or another macro's input.
    user_bound: Vec<String>,
    /// Whether some block mentions `headers` or `cookies`, so the handler must capture
    /// the request's header map.
    pub(crate) reads_headers: bool,
    /// How many `after!` were rewritten so far.
    found: usize,
    /// How many `after!` blocks enclose the visitor.
    in_block: usize,
    pub(crate) errors: Option<syn::Error>,
}

impl<'a> Rewriter<'a> {
    pub(crate) fn new(krate: &'a Path, user_bound: Vec<String>) -> Self {
        Rewriter {
            krate,
            user_bound,
            reads_headers: false,
            found: 0,
            in_block: 0,
            errors: None,
        }
    }

    fn error(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// Where the block uses the context variable `name`, unless the user bound it.
    fn uses(&self, tokens: &TokenStream, name: &str) -> Option<Span> {
        if self.user_bound.iter().any(|bound| bound == name) {
            return None;
        }
        mention(tokens, name)
    }

    /// Replaces an `after!` input with the registration it stands for.
    fn rewrite_input(&mut self, tokens: TokenStream, span: Span) -> TokenStream {
        if input::is_expanded(&tokens) {
            // Already rewritten, by an attribute that expanded this code before.
            return tokens;
        }
        self.found += 1;
        let input = match AfterInput::parse.parse2(tokens.clone()) {
            Ok(input) => input,
            Err(error) => {
                self.error(error);
                let body = input::trailing_block(tokens);
                return input::expanded(quote!({ let _ = async move #body; }));
            }
        };
        let headers = self.uses(&input.body, "headers");
        let cookies = self.uses(&input.body, "cookies");
        self.reads_headers |= headers.is_some() || cookies.is_some();
        let body = self.rewrite_block(input.body, span);
        input::expanded(
            Registration {
                krate: self.krate,
                span,
                in_task: self.in_block > 0,
                options: &input.options,
                clones: &input.clones,
                headers,
                cookies,
                body,
            }
            .into_tokens(),
        )
    }

    /// The statements of an `after!` block, with the `after!` calls in them rewritten.
    fn rewrite_block(&mut self, body: TokenStream, span: Span) -> TokenStream {
        let Ok(stmts) = Block::parse_within.parse2(body.clone()) else {
            // Left as they are, so rustc reports the syntax error at the user's code.
            return body;
        };
        let mut block = Block {
            brace_token: Default::default(),
            stmts,
        };
        let outer = self.user_bound.len();
        self.user_bound.extend(bound_in_stmts(&block.stmts));
        self.in_block += 1;
        self.visit_block_mut(&mut block);
        self.in_block -= 1;
        self.user_bound.truncate(outer);
        question_mark::end_in_result(&mut block.stmts, self.krate, span);
        let stmts = &block.stmts;
        quote!(#(#stmts)*)
    }

    fn rewrite(&mut self, mac: &mut Macro) {
        let span = mac
            .path
            .segments
            .last()
            .map_or_else(Span::call_site, |s| s.ident.span());
        let tokens = std::mem::take(&mut mac.tokens);
        mac.tokens = self.rewrite_input(tokens, span);
    }

    fn rewrite_other_macro(&mut self, mac: &mut Macro) {
        let tokens = std::mem::take(&mut mac.tokens);
        // What the macro makes of its input is unknown: a `headers` written in it
        // outside the blocks may bind the name (`headers = rx => ...` in `select!`).
        let outer = self.user_bound.len();
        self.user_bound.extend(mentioned_outside_after(&tokens));
        mac.tokens = tokens::map_after_calls(tokens, &mut |ident, group| {
            self.rewrite_input(group.stream(), ident.span())
        });
        self.user_bound.truncate(outer);
    }
}

impl VisitMut for Rewriter<'_> {
    fn visit_item_mut(&mut self, item: &mut Item) {
        // Nested items cannot reach the handler's request; see the module docs.
        let mut nested = NestedItem { errors: None };
        nested.visit_item_mut(item);
        if let Some(error) = nested.errors {
            self.error(error);
        }
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Macro(m) if is_after(&m.mac) => self.rewrite(&mut m.mac),
            Expr::Macro(m) => self.rewrite_other_macro(&mut m.mac),
            Expr::Async(syn::ExprAsync { capture, .. })
            | Expr::Closure(syn::ExprClosure { capture, .. }) => {
                let moves = capture.is_some();
                let before = self.found;
                visit_mut::visit_expr_mut(self, expr);
                if moves && self.found > before {
                    codegen::own_context(expr, self.krate, self.in_block > 0);
                }
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        match stmt {
            Stmt::Macro(m) if is_after(&m.mac) => self.rewrite(&mut m.mac),
            Stmt::Macro(m) => self.rewrite_other_macro(&mut m.mac),
            _ => visit_mut::visit_stmt_mut(self, stmt),
        }
    }
}

/// The names the block's context may bind, `headers` and `cookies`.
const CONTEXT_NAMES: [&str; 2] = ["headers", "cookies"];

/// The context names `func` binds itself: in its parameters, and in any pattern of
/// its body outside nested items and macros' inputs.
pub(crate) fn user_bound(func: &ItemFn) -> Vec<String> {
    let mut bindings = Bindings(Vec::new());
    for input in &func.sig.inputs {
        if let FnArg::Typed(typed) = input {
            bindings.visit_pat(&typed.pat);
        }
    }
    bindings.visit_block(&func.block);
    bindings.0
}

/// The context names patterns in `stmts` bind, outside nested items and macros'
/// inputs.
fn bound_in_stmts(stmts: &[Stmt]) -> Vec<String> {
    let mut bindings = Bindings(Vec::new());
    for stmt in stmts {
        bindings.visit_stmt(stmt);
    }
    bindings.0
}

/// Collects the context names bound by patterns. Every binding is a `PatIdent`:
/// `headers`, `ref mut headers`, `headers @ ..`, a field shorthand
/// `Request { headers, .. }`.
struct Bindings(Vec<String>);

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
        if CONTEXT_NAMES.iter().any(|name| pat.ident == name) {
            self.0.push(pat.ident.to_string());
        }
        syn::visit::visit_pat_ident(self, pat);
    }

    // A nested item's bindings are not in scope in the handler.
    fn visit_item(&mut self, _: &'ast Item) {}
}

/// The context names written as variables in another macro's `tokens`, outside its
/// `after!` blocks: not after a `.`, and not as a field name before a single `:`.
fn mentioned_outside_after(tokens: &TokenStream) -> Vec<String> {
    let mut names = Vec::new();
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let punct =
        |i: usize, c: char| matches!(trees.get(i), Some(TokenTree::Punct(p)) if p.as_char() == c);
    let mut i = 0;
    while let Some(tree) = trees.get(i) {
        match tree {
            TokenTree::Ident(ident) if ident == "after" && punct(i + 1, '!') => i += 2,
            TokenTree::Ident(ident) if CONTEXT_NAMES.iter().any(|name| ident == name) => {
                let field = i > 0 && punct(i - 1, '.');
                let field_name = punct(i + 1, ':') && !punct(i + 2, ':');
                if !field && !field_name {
                    names.push(ident.to_string());
                }
            }
            TokenTree::Group(group) => names.extend(mentioned_outside_after(&group.stream())),
            _ => {}
        }
        i += 1;
    }
    names
}

/// Turns each `after!` in a nested item into a compile error: the item cannot see
/// the handler's request.
struct NestedItem {
    errors: Option<syn::Error>,
}

/// The error for an `after!` in an item nested in a handler.
pub(crate) const IN_NESTED_ITEM: &str = "a `fn` nested in a `#[with_after]` handler cannot see its \
    request, so `after!` does not work there; register the work with \
    `after_runtime::after(future)` instead";

impl NestedItem {
    fn error(&mut self, tokens: TokenStream) {
        let error = syn::Error::new_spanned(tokens, IN_NESTED_ITEM);
        match &mut self.errors {
            Some(all) => all.combine(error),
            None => self.errors = Some(error),
        }
    }

    fn reject(&mut self, mac: &mut Macro) {
        self.error(mac.to_token_stream());
        mac.tokens = input::expanded(quote!({}));
    }

    fn macro_mut(&mut self, mac: &mut Macro) {
        if is_after(mac) {
            if !input::is_expanded(&mac.tokens) {
                self.reject(mac);
            }
        } else if !mac.path.is_ident("macro_rules") {
            // A `macro_rules!` body is a template: its `after!` is checked where it
            // is expanded.
            let tokens = std::mem::take(&mut mac.tokens);
            mac.tokens = tokens::map_after_calls(tokens, &mut |ident, group| {
                if input::is_expanded(&group.stream()) {
                    return group.stream();
                }
                self.error(quote!(#ident ! #group));
                input::expanded(quote!({}))
            });
        }
    }
}

/// Whether `attrs` holds `#[with_after]`: that item is a handler of its own.
fn marked_with_after(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|last| last.ident == "with_after")
    })
}

impl VisitMut for NestedItem {
    fn visit_item_fn_mut(&mut self, item: &mut syn::ItemFn) {
        if !marked_with_after(&item.attrs) {
            visit_mut::visit_item_fn_mut(self, item);
        }
    }

    fn visit_impl_item_fn_mut(&mut self, item: &mut syn::ImplItemFn) {
        if !marked_with_after(&item.attrs) {
            visit_mut::visit_impl_item_fn_mut(self, item);
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        self.macro_mut(mac);
    }
}
