//! A parameter pattern named `cookies` (`State(cookies)`) wins inside `after!`.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::State;
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler(State(cookies): State<u32>) -> &'static str {
    after! {
        let next: u32 = cookies + 1;
        println!("{next}");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler)).with_state(5u32);
}
