//! Finds the `after!` invocations of a handler body and rewrites each into a task
//! registration.
//!
//! What the visitor descends into is a decision, each with a test:
//! - blocks, `if`/`match` arms, loops and `let else`: yes; the registration runs
//!   wherever control flow reaches it (once per loop iteration).
//! - closures and async blocks: yes. A `move` closure or `async move` block that
//!   contains an `after!` gets its own clone of the request context, so it may
//!   outlive the handler (`tokio::spawn(async move { after! { ... } })`); a task
//!   registered after the response is finished starts at once. Any closure or async
//!   block with an `after!` (and any other macro's input with one) makes the handler
//!   take its request's scope while extracting, since that code may run on another
//!   thread (`std::thread::scope`, rayon) where the layer's scope cannot be found.
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

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, FnArg, Ident, Item, ItemFn, Macro, Path, Stmt, Token};

/// The name of the hidden binding that holds the request context, `&Context` in the
/// handler and `Context` inside a running task. Mixed-site hygiene keeps it out of
/// reach of user code.
pub(crate) fn context_ident() -> Ident {
    Ident::new("__after", Span::mixed_site())
}

/// Rewrites every `after!` it reaches.
pub(crate) struct Rewriter<'a> {
    krate: &'a Path,
    /// `headers` / `cookies` where the user binds them around the visitor (see the
    /// module docs): then the user's variable wins and a block binds nothing under
    /// that name. Grows while visiting an `after!` block or another macro's input.
    user_bound: Vec<String>,
    /// Whether some block mentions `headers` or `cookies`, so the handler must capture
    /// the request's header map.
    pub(crate) captures_request: bool,
    /// Whether some `after!` written in the handler itself (not in another block) sits
    /// in a closure, an async block or another macro's input, code that may run away
    /// from the handler's task: then the handler must make its scope while extracting.
    pub(crate) enclosed_after: bool,
    /// How many `after!` were rewritten so far.
    found: usize,
    /// How many closures, async blocks and other macros' inputs enclose the visitor.
    enclosing: usize,
    /// How many `after!` blocks enclose the visitor.
    in_block: usize,
    pub(crate) errors: Option<syn::Error>,
}

/// The input of one `after!`: an optional capture list, then the block's statements.
struct AfterInput {
    clones: Vec<Ident>,
    body: TokenStream,
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

impl<'a> Rewriter<'a> {
    pub(crate) fn new(krate: &'a Path, user_bound: Vec<String>) -> Self {
        Rewriter {
            krate,
            user_bound,
            captures_request: false,
            enclosed_after: false,
            found: 0,
            enclosing: 0,
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

    /// Replaces an `after!` input with the registration it stands for. The macro
    /// itself stays: the fallback `after!` passes `@__after_expanded` input through
    /// unchanged, so the user's `use after_runtime::after;` stays used.
    fn rewrite_input(&mut self, tokens: TokenStream, span: Span) -> TokenStream {
        self.found += 1;
        // Inside another block, `after!` registers through that task's context.
        self.enclosed_after |= self.in_block == 0 && self.enclosing > 0;
        let input = match AfterInput::parse.parse2(tokens.clone()) {
            Ok(input) => input,
            Err(error) => {
                self.error(error);
                // Still mention the block's variables, so the one error is the only
                // diagnostic.
                let body = tokens.into_iter().last().filter(
                    |t| matches!(t, TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace),
                );
                return quote!(@__after_expanded { let _ = async move #body; });
            }
        };
        let headers = self.uses(&input.body, "headers");
        let cookies = self.uses(&input.body, "cookies");
        self.captures_request |= headers.is_some() || cookies.is_some();
        // The runtime's path carries the block's span, so errors in the generated call
        // (a non-`Send` capture, a wrong block value) point at the user's `after!`.
        let krate = &respan(self.krate.to_token_stream(), span);

        let block = match Block::parse_within.parse2(input.body.clone()) {
            Ok(stmts) => {
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
                type_the_final_ok(&mut block, krate);
                let stmts = &block.stmts;
                quote!(#(#stmts)*)
            }
            // Leave the tokens as they are so rustc reports the syntax error at the
            // user's code.
            Err(_) => input.body,
        };

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
        let clones: Vec<TokenStream> = input.clones.iter().map(|name| {
            quote_spanned!(name.span()=> let #name = ::core::clone::Clone::clone(&#name);)
        }).collect();
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
        // Braces only when there is something to clone: `unused_braces` otherwise.
        let register = if input.clones.is_empty() {
            register
        } else {
            quote_spanned!(span=> { #(#clones)* #register })
        };
        quote!(@__after_expanded #register)
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

    /// Rewrites every `after! <group>` inside another macro's tokens.
    fn rewrite_tokens(&mut self, tokens: TokenStream) -> TokenStream {
        let mut out = Vec::new();
        let mut trees = tokens.into_iter().peekable();
        while let Some(tree) = trees.next() {
            match tree {
                TokenTree::Ident(ident) if ident == "after" => {
                    let bang =
                        matches!(trees.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                    out.push(TokenTree::Ident(ident.clone()));
                    if !bang {
                        continue;
                    }
                    out.push(trees.next().expect("peeked"));
                    match trees.next() {
                        Some(TokenTree::Group(group)) => {
                            let rewritten = self.rewrite_input(group.stream(), ident.span());
                            out.push(regroup(&group, rewritten, group.span()));
                        }
                        Some(other) => out.push(other),
                        None => {}
                    }
                }
                TokenTree::Group(group) => {
                    let rewritten = self.rewrite_tokens(group.stream());
                    out.push(regroup(&group, rewritten, group.span()));
                }
                other => out.push(other),
            }
        }
        out.into_iter().collect()
    }

    fn rewrite_other_macro(&mut self, mac: &mut Macro) {
        let tokens = std::mem::take(&mut mac.tokens);
        // What the macro makes of its input is unknown: a `headers` written in it
        // outside the blocks may bind the name (`headers = rx => ...` in `select!`).
        let outer = self.user_bound.len();
        self.user_bound.extend(mentioned_outside_after(&tokens));
        self.enclosing += 1;
        mac.tokens = self.rewrite_tokens(tokens);
        self.enclosing -= 1;
        self.user_bound.truncate(outer);
    }

    /// Gives a `move` closure or `async move` block that registers tasks its own
    /// clone of the context, so it may outlive the handler.
    fn own_context(&self, expr: &mut Expr) {
        let krate = self.krate;
        let after = context_ident();
        let rebind: Stmt = syn::parse_quote!(let #after = &#after;);
        match expr {
            Expr::Async(block) => block.block.stmts.insert(0, rebind),
            Expr::Closure(closure) => {
                let body = &closure.body;
                *closure.body = syn::parse_quote!({ #rebind #body });
            }
            _ => return,
        }
        let inner = expr.to_token_stream();
        *expr = syn::parse_quote!({
            let #after = #krate::__private::Context::clone(&#after);
            #inner
        });
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
                self.enclosing += 1;
                visit_mut::visit_expr_mut(self, expr);
                self.enclosing -= 1;
                if moves && self.found > before {
                    self.own_context(expr);
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

/// `after!`, or a path ending in `::after!` (`after_runtime::after!`, or the runtime
/// re-exported under another name).
fn is_after(mac: &Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|last| last.ident == "after")
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
        mac.tokens = quote!(@__after_expanded {});
    }

    /// Rejects every `after! <group>` inside another macro's tokens.
    fn reject_in_tokens(&mut self, tokens: TokenStream) -> TokenStream {
        let mut out = Vec::new();
        let mut trees = tokens.into_iter().peekable();
        while let Some(tree) = trees.next() {
            match tree {
                TokenTree::Ident(ident) if ident == "after" => {
                    out.push(TokenTree::Ident(ident.clone()));
                    if !matches!(trees.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                        continue;
                    }
                    let bang = trees.next().expect("peeked");
                    out.push(bang.clone());
                    match trees.next() {
                        Some(TokenTree::Group(group)) => {
                            self.error(quote!(#ident #bang #group));
                            out.push(regroup(&group, quote!(@__after_expanded {}), group.span()));
                        }
                        Some(other) => out.push(other),
                        None => {}
                    }
                }
                TokenTree::Group(group) => {
                    let rejected = self.reject_in_tokens(group.stream());
                    out.push(regroup(&group, rejected, group.span()));
                }
                other => out.push(other),
            }
        }
        out.into_iter().collect()
    }

    fn macro_mut(&mut self, mac: &mut Macro) {
        if is_after(mac) {
            self.reject(mac);
        } else if !mac.path.is_ident("macro_rules") {
            // A `macro_rules!` body is a template: its `after!` is checked where it
            // is expanded.
            let tokens = std::mem::take(&mut mac.tokens);
            mac.tokens = self.reject_in_tokens(tokens);
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

/// `tokens` with every token's span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                tree = regroup(group, respan(group.stream(), span), span);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `group`'s delimiter around `stream`, spanned at `span`.
fn regroup(group: &Group, stream: TokenStream, span: Span) -> TokenTree {
    let mut new = Group::new(group.delimiter(), stream);
    new.set_span(span);
    TokenTree::Group(new)
}

/// A block that uses `?` and ends in a plain `Ok(())` leaves the error type to
/// inference, which cannot decide between the `From` impls. Give it the runtime's
/// boxed error, so `?` accepts any error the way `main` with `Box<dyn Error>` does.
fn type_the_final_ok(block: &mut Block, krate: &TokenStream) {
    struct Question(bool);
    impl<'ast> Visit<'ast> for Question {
        fn visit_expr_try(&mut self, _: &'ast syn::ExprTry) {
            self.0 = true;
        }
        // `?` there belongs to another body.
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'ast Item) {}
    }

    let mut question = Question(false);
    for stmt in &block.stmts {
        question.visit_stmt(stmt);
    }
    if !question.0 {
        return;
    }
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
        return;
    };
    let plain_ok = matches!(&*call.func, Expr::Path(p) if p.qself.is_none() && p.path.is_ident("Ok"))
        && call.args.len() == 1
        && matches!(&call.args[0], Expr::Tuple(t) if t.elems.is_empty());
    if plain_ok {
        let span = call.func.span();
        *call.func = syn::parse_quote_spanned!(span=>
            ::core::result::Result::<(), #krate::__private::BoxError>::Ok
        );
    }
}
