//! `after!(clone(headers) { ... })` clones the user's `headers`, which the block then uses.
//! The block uses the user's `u32`, so this would not compile if the macro bound the
//! request's value under that name.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> String {
    let headers: u32 = 5;
    after!(clone(headers) {
        let next: u32 = headers + 1;
        println!("{next}");
    });
    format!("{headers}")
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
