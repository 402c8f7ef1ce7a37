//! The fallback `after!`: reached only where `#[with_after]` did not rewrite it.

/// Registers the block as a task that runs after the response has been sent.
///
/// Only meaningful inside a [`#[with_after]`](crate::with_after) handler, which
/// rewrites each `after! { ... }` into a registration; see there for the grammar and
/// what the block sees (`headers`, `cookies`). Anywhere else it is a compile error
/// that says so; use the function [`after()`](fn@crate::after) outside handlers.
///
/// ```compile_fail
/// use after_runtime::after;
///
/// async fn handler() {
///     after! { println!("not inside #[with_after]"); }
/// }
/// ```
#[macro_export]
macro_rules! after {
    (@__after_expanded $($registration:tt)*) => {
        $($registration)*
    };
    ($($block:tt)*) => {
        ::core::compile_error!(
            "`after!` can only be used inside an `async fn` marked `#[with_after]`; \
             add `#[after_runtime::with_after]` to the handler (above `#[axum::debug_handler]`), \
             or call `after_runtime::after(future)` instead"
        )
    };
}
