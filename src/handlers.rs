//! The trivial handlers the benchmarks compare (`benches/overhead.rs`,
//! `examples/load.rs`, `examples/instructions.rs`): each does nothing but the one
//! thing measured, so the differences between them are the cost of that thing.

use after_runtime::{after, with_after};

/// No after work at all: the baseline.
pub async fn plain() -> &'static str {
    "ok"
}

/// What a user writes without this library: a `tokio::spawn` of the same no-op.
pub async fn spawn_noop() -> &'static str {
    drop(tokio::spawn(async {}));
    "ok"
}

/// One no-op task through `after()`. Needs `AfterLayer` around it.
pub async fn after_noop() -> &'static str {
    after(async {}).expect("served under AfterLayer");
    "ok"
}

/// One empty `after!` block.
#[with_after]
pub async fn with_after_noop() -> &'static str {
    after! {}
    "ok"
}

/// A manual `tokio::spawn` of a task that waits once (it yields) before it ends.
pub async fn spawn_yield() -> &'static str {
    drop(tokio::spawn(tokio::task::yield_now()));
    "ok"
}

/// One `after!` block that waits once (it yields) before it ends: what a task that
/// awaits I/O costs beyond one that finishes on its first poll.
#[with_after]
pub async fn with_after_yield() -> &'static str {
    after! {
        tokio::task::yield_now().await;
    }
    "ok"
}
