//! A `let` binding named `headers` or `cookies` wins inside `after!`.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    let headers: u32 = 5;
    let cookies: u32 = 6;
    after! {
        let sum: u32 = headers + cookies;
        println!("{sum}");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
