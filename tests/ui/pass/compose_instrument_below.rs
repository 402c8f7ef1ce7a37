//! `#[with_after]` above `#[tracing::instrument]`.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::Path;
use axum::routing::get;
use axum::Router;

#[with_after]
#[tracing::instrument]
async fn handler(Path(id): Path<u64>) -> String {
    after! { tracing::info!(id, "after"); }
    format!("{id}")
}

fn main() {
    let _app: Router = Router::new().route("/{id}", get(handler));
}
