//! What an `after!` block that uses `?` ends in.
//!
//! `?` needs the block to return a `Result`, and its error type to be known. The
//! macro cannot see types, so it decides from the block's last statement:
//!
//! - a plain `Ok(())`: its error type is left to inference, which cannot choose
//!   between the `From` impls, so it becomes `Ok::<(), BoxError>(())`: `?` accepts any
//!   error, as in a `main` returning `Box<dyn Error>`.
//! - another `Ok(..)` or `Err(..)` call (`Ok::<(), MyError>(())`): left as written.
//! - no value (the last statement ends in `;`, or is a `let`): the block then ends in
//!   `Ok::<(), BoxError>(())`.
//! - any other expression: it may be `()` (`log(n)`, an `if` without `else`), a
//!   `Result` (`audit(n).await`) or never end (`loop`, `todo!()`); the runtime's
//!   `finish` decides from its type, turning `()` into `Ok::<(), BoxError>(())` and
//!   keeping a `Result`.
//!
//! Only a `?` of the block's own counts: one in a closure, an async block or an item
//! belongs to that body. In another macro's input, a `?` right after an expression
//! (`println!("{}", parse(s)?)`) counts, and one that starts a value does not
//! (`tracing::info!(?id)`). Counting one too many is harmless: a block that ends in
//! `()` then returns `Ok(())`, which the runtime counts the same, and any other value
//! is kept.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprCall, Item, Path, Stmt};

use crate::input::is_after;
use crate::tokens::{has_question_mark, respan};

/// Makes the statements of a block that uses `?` end in a `Result` the task accepts.
/// `span` is the `after` identifier's, which paths into the runtime carry.
pub(crate) fn end_in_result(stmts: &mut Vec<Stmt>, krate: &Path, span: Span) {
    if !uses_question_mark(stmts) {
        return;
    }
    let krate = respan(krate.to_token_stream(), span);
    match stmts.last_mut() {
        Some(Stmt::Expr(Expr::Call(call), None)) if is_result_call(call) => {
            if is_plain_ok(call) {
                let span = call.func.span();
                *call.func = syn::parse_quote_spanned!(span=>
                    ::core::result::Result::<(), #krate::__private::BoxError>::Ok
                );
            }
        }
        Some(
            Stmt::Expr(_, None)
            | Stmt::Macro(syn::StmtMacro {
                semi_token: None, ..
            }),
        ) => {
            let tail = stmts.pop().expect("matched");
            // All at the tail, so a wrong value gets one error, there.
            let span = tail.span();
            let krate = respan(krate, span);
            // `allow`: a tail that never ends (`loop`, `todo!()`) makes the call
            // unreachable. It covers the tail's own code too; a `let` for the value
            // would keep that linted, but a hidden name's error lands on the attribute.
            stmts.extend(parse_stmts(quote_spanned! {span=>
                #[allow(unreachable_code)]
                #krate::__private::finish(#tail)
            }));
        }
        _ => {
            // `allow`: after a last statement that never ends (`return ...;`,
            // `panic!(..);`) this is unreachable.
            stmts.extend(parse_stmts(quote_spanned! {span=>
                #[allow(unreachable_code)]
                ::core::result::Result::<(), #krate::__private::BoxError>::Ok(())
            }));
        }
    }
}

fn parse_stmts(tokens: TokenStream) -> Vec<Stmt> {
    syn::Block::parse_within
        .parse2(tokens)
        .expect("generated statements parse")
}

/// Whether the block uses `?` itself; see the module docs.
fn uses_question_mark(stmts: &[Stmt]) -> bool {
    struct Question(bool);
    impl<'ast> Visit<'ast> for Question {
        fn visit_expr_try(&mut self, _: &'ast syn::ExprTry) {
            self.0 = true;
        }
        // A `?` there belongs to another body.
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'ast Item) {}
        // A nested `after!` is a task of its own.
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            self.0 |= !is_after(mac) && has_question_mark(&mac.tokens);
        }
    }

    let mut question = Question(false);
    for stmt in stmts {
        question.visit_stmt(stmt);
    }
    question.0
}

/// A call of `Ok` or `Err`, by any path (`Ok::<(), E>`, `Result::Ok`).
fn is_result_call(call: &ExprCall) -> bool {
    matches!(&*call.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ok" || s.ident == "Err"))
}

/// `Ok(())`, written without a type.
fn is_plain_ok(call: &ExprCall) -> bool {
    matches!(&*call.func, Expr::Path(p) if p.qself.is_none() && p.path.is_ident("Ok"))
        && call.args.len() == 1
        && matches!(&call.args[0], Expr::Tuple(t) if t.elems.is_empty())
}
