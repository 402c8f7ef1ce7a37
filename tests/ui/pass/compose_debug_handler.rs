//! `#[with_after]` above `#[axum::debug_handler]`: the hidden extractor is checked
//! like any other.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::Json;
use axum::routing::post;
use axum::Router;

#[with_after]
#[axum::debug_handler]
async fn handler(Json(value): Json<u32>) -> String {
    after! { println!("{value}"); }
    value.to_string()
}

fn main() {
    let _app: Router = Router::new().route("/", post(handler));
}
