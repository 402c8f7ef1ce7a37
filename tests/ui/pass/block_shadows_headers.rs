//! A block that binds `headers` itself still sees the request's `headers` before that
//! binding, as with any shadowing.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    after! {
        let count = headers.len();
        let headers: u32 = 5;
        let next: u32 = headers + 1;
        println!("{count} {next}");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
