//! The code `#[with_after]` writes: the hidden extractor and the context binding of
//! the handler, one registration per `after!` block, and the context clone a `move`
//! closure or async block takes.
//!
//! Generated code reaches the runtime only through absolute paths into
//! `::after_runtime::__private` (or the path given with `crate = "..."`), and names
//! its bindings with mixed-site hygiene so user code cannot see them.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Path};

use crate::input::Options;
use crate::tokens::respan;

/// The hidden names of generated code. Mixed-site hygiene keeps them out of reach of
/// user code.
mod names {
    use proc_macro2::{Ident, Span};

    /// The handler's hidden extractor, a `Scope`, `ScopeWithHeaders` or `OnlyScope`.
    pub(super) fn scope() -> Ident {
        Ident::new("__after_scope", Span::mixed_site())
    }

    /// The request's `&TaskContext` in the handler, which its `after!` calls register
    /// with; a `move` closure or async block holds its own clone under this name.
    pub(super) fn handler_context() -> Ident {
        Ident::new("__after_context", Span::mixed_site())
    }

    /// The `TaskContext` a running task receives, which the `after!` calls inside its
    /// block register with.
    pub(super) fn task_context() -> Ident {
        Ident::new("__after_task", Span::mixed_site())
    }
}

/// The context an `after!` registers with: the handler's, or inside another block,
/// that task's.
fn context(in_task: bool) -> Ident {
    if in_task {
        names::task_context()
    } else {
        names::handler_context()
    }
}

/// Adds the hidden extractor as the handler's first parameter, and binds the context
/// registrations use at the top of its body. Only a handler whose blocks read
/// `headers` or `cookies` copies the request's headers.
pub(crate) fn inject_scope(func: &mut ItemFn, krate: &Path, reads_headers: bool) {
    let scope = names::scope();
    let context = names::handler_context();
    // A handler with no parameter of its own takes the whole request, which axum
    // then need not split into parts.
    let ty = match (func.sig.inputs.is_empty(), reads_headers) {
        (true, headers) => quote!(#krate::__private::OnlyScope::<#headers>),
        (false, true) => quote!(#krate::__private::ScopeWithHeaders),
        (false, false) => quote!(#krate::__private::Scope),
    };
    let param: FnArg = syn::parse_quote!(#scope: #ty);
    func.sig.inputs.insert(0, param);
    let block = &func.block;
    func.block = syn::parse_quote!({
        let #context = #ty::context(&#scope);
        #block
    });
}

/// One `after!` block, rewritten: what its registration needs.
pub(crate) struct Registration<'a> {
    pub(crate) krate: &'a Path,
    /// The span of the `after` identifier: generated code that can fail to type-check
    /// carries it, so errors point at the user's block.
    pub(crate) span: Span,
    /// Whether the `after!` is inside another block, so registers with its task.
    pub(crate) in_task: bool,
    pub(crate) options: &'a Options,
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
        let context = context(self.in_task);
        let task = names::task_context();
        let bind = |name: Option<Span>, getter: &str| {
            name.map(|name_span| {
                let name = Ident::new(getter, name_span);
                let getter = Ident::new(getter, span);
                quote_spanned! {span=>
                    #[allow(unused_variables)]
                    let #name = #krate::__private::TaskContext::#getter(&#task);
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
        let location = quote_spanned! {span=>
            #krate::__private::Location::new(::core::file!(), #line, #column)
        };
        let closure = quote_spanned! {span=>
            move |#task: #krate::__private::TaskContext| async move {
                #headers
                #cookies
                #body
            }
        };
        let register = if self.options.is_empty() {
            quote_spanned! {span=>
                #krate::__private::register(&#context, #location, #closure)
            }
        } else {
            let options = task_options(krate, self.options, span);
            quote_spanned! {span=>
                #krate::__private::register_with(&#context, #location, #options, #closure)
            }
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

/// The `TaskOptions` a block's options make. Each value keeps its own span, so a
/// `timeout` that is not a `Duration` is reported at the user's expression.
fn task_options(krate: &TokenStream, options: &Options, span: Span) -> TokenStream {
    let name = options.name.as_ref().map(|name| quote!(.name(#name)));
    let timeout = options.timeout.as_ref().map(|timeout| {
        let method = Ident::new("timeout", timeout.span());
        quote_spanned!(timeout.span()=> .#method(#timeout))
    });
    quote_spanned!(span=> #krate::__private::TaskOptions::new() #name #timeout)
}

/// Gives a `move` closure or `async move` block that registers tasks its own clone of
/// the context, so it may outlive the handler (or the task it is written in).
pub(crate) fn own_context(expr: &mut Expr, krate: &Path, in_task: bool) {
    if !matches!(expr, Expr::Async(_) | Expr::Closure(_)) {
        return;
    }
    let context = context(in_task);
    let inner = expr.to_token_stream();
    *expr = syn::parse_quote!({
        let #context = #krate::__private::TaskContext::clone(&#context);
        #inner
    });
}
