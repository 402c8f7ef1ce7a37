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
    // Anything else was not rewritten by `#[with_after]`. The attribute, in its
    // fallback role, reports why from where the block is written: outside any
    // handler, in a nested fn, or nothing in a handler below `debug_handler`, whose
    // own attribute reports that. A block, so it stands where an expression may.
    ($($block:tt)*) => {{
        #[$crate::with_after(__not_rewritten)]
        fn __after_not_rewritten() { __after_not_rewritten! { $($block)* } }
    }};
}
