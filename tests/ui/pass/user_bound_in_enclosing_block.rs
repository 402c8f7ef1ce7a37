//! A binding in an enclosing `after!` block wins inside a nested `after!`.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    after! {
        let cookies: u32 = 6;
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
