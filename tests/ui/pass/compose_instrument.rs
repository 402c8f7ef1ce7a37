//! `#[tracing::instrument]` above `#[with_after]`: the span records the user's
//! arguments only, and the tasks follow from it.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::Path;
use axum::routing::get;
use axum::Router;

#[tracing::instrument]
#[with_after]
async fn handler(Path(id): Path<u64>) -> String {
    after! { tracing::info!(id, "after"); }
    format!("{id}")
}

fn main() {
    let _app: Router = Router::new().route("/{id}", get(handler));
}
