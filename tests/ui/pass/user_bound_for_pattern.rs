//! A `for` pattern wins inside an `after!` in the loop.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    for (headers, cookies) in [(1u32, 2u32), (3, 4)] {
        after! {
            let sum: u32 = headers + cookies;
            println!("{sum}");
        }
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
