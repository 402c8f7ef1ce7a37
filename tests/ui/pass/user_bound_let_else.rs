//! A `let else` binding wins inside `after!`.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    let Some(headers) = Some(5u32) else {
        return "none";
    };
    after! {
        let next: u32 = headers + 1;
        println!("{next}");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
