//! A `while let` pattern wins inside an `after!` in the loop.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    let mut pending = vec![5u32];
    while let Some(cookies) = pending.pop() {
        after! {
            let next: u32 = cookies + 1;
            println!("{next}");
        }
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
