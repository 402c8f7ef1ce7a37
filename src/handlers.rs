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
