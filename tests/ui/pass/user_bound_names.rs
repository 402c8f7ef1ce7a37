//! A handler that binds `headers` itself keeps its own variable inside `after!`.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler(headers: HeaderMap) -> &'static str {
    after! {
        let mine: HeaderMap = headers;
        println!("{} headers; cookies: {}", mine.len(), cookies.iter().count());
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
