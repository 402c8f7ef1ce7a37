//! The code `#[with_after]` writes: the hidden extractor and the context binding of
//! the handler, one registration per `after!` block, and the context clone a `move`
//! closure or async block takes.
//!
//! Generated code reaches the runtime only through absolute paths into
//! `::after_runtime::__private` (or the path given with `crate = "..."`), and names
//! its bindings with mixed-site hygiene so user code cannot see them.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Block, Expr, FnArg, Ident, Item, ItemFn, Path, Stmt};

use crate::tokens::respan;

/// The name of the hidden binding that holds the request context, `&Context` in the
/// handler and `Context` inside a running task. Mixed-site hygiene keeps it out of
/// reach of user code.
pub(crate) fn context_ident() -> Ident {
    Ident::new("__after", Span::mixed_site())
}

/// Adds the hidden extractor as the handler's first parameter, and binds the context
/// registrations use at the top of its body.
pub(crate) fn inject_scope(func: &mut ItemFn, krate: &Path, captures_request: bool, eager: bool) {
    let request = Ident::new("__after_request", Span::mixed_site());
    let after = context_ident();
    let param: FnArg = syn::parse_quote! {
        #request: #krate::__private::Scope<#captures_request, #eager>
    };
    func.sig.inputs.insert(0, param);
    let block = &func.block;
    func.block = syn::parse_quote!({
        let #after = #krate::__private::Scope::context(&#request);
        #block
    });
}

/// One `after!` block, rewritten: what its registration needs.
pub(crate) struct Registration<'a> {
    pub(crate) krate: &'a Path,
    /// The span of the `after` identifier: generated code that can fail to type-check
    /// carries it, so errors point at the user's block.
    pub(crate) span: Span,
    pub(crate) clones: &'a [Ident],
    /// Where the block uses the request's `headers` and `cookies`, if it does.
    pub(crate) headers: Option<Span>,
    pub(crate) cookies: Option<Span>,
    /// The block's statements, already rewritten; any tokens if they do not parse.
    pub(crate) body: TokenStream,
}

impl Registration<'_> {
    /// The call that registers the block as a task, with its capture list's clones.
    pub(crate) fn into_tokens(self) -> TokenStream {
        let span = self.span;
        // The runtime's path carries the block's span, so errors in the generated call
        // (a non-`Send` capture, a wrong block value) point at the user's `after!`.
        let krate = &respan(self.krate.to_token_stream(), span);
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
        let headers = bind(self.headers, "headers");
        let cookies = bind(self.cookies, "cookies");
        // `#[track_caller]` and `line!()` would report the attribute's line, the
        // outermost expansion; the span knows where this block was written.
        let start = span.start();
        let line = start.line as u32;
        let column = start.column as u32 + 1;
        let body = self.body;
        let register = quote_spanned! {span=>
            #krate::__private::register(
                &#after,
                #krate::__private::Location::new(::core::file!(), #line, #column),
                move |#after: #krate::__private::Context| async move {
                    #headers
                    #cookies
                    #body
                },
            )
        };
        if self.clones.is_empty() {
            // No braces around it: `unused_braces` would fire.
            return register;
        }
        let clones = self.clones.iter().map(
            |name| quote_spanned!(name.span()=> let #name = ::core::clone::Clone::clone(&#name);),
        );
        quote_spanned!(span=> { #(#clones)* #register })
    }
}

/// Gives a `move` closure or `async move` block that registers tasks its own clone of
/// the context, so it may outlive the handler.
pub(crate) fn own_context(expr: &mut Expr, krate: &Path) {
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

/// A block that uses `?` and ends in a plain `Ok(())` leaves the error type to
/// inference, which cannot decide between the `From` impls. Give it the runtime's
/// boxed error, so `?` accepts any error the way `main` with `Box<dyn Error>` does.
pub(crate) fn type_the_final_ok(block: &mut Block, krate: &Path, span: Span) {
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
        let krate = respan(krate.to_token_stream(), span);
        let span = call.func.span();
        *call.func = syn::parse_quote_spanned!(span=>
            ::core::result::Result::<(), #krate::__private::BoxError>::Ok
        );
    }
}
