//! Fifteen user extractors: axum's limit of sixteen, less the hidden one.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, Uri, Version};
use axum::routing::post;
use axum::Router;

#[with_after]
#[allow(clippy::too_many_arguments)]
async fn handler(
    _a: Method,
    _b: Uri,
    _c: Version,
    _d: HeaderMap,
    _e: OriginalUri,
    _f: State<()>,
    _g: Method,
    _h: Uri,
    _i: Version,
    _j: HeaderMap,
    _k: OriginalUri,
    _l: State<()>,
    _m: Method,
    _n: Uri,
    body: String,
) -> &'static str {
    after! { println!("{} bytes", body.len()); }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", post(handler));
}
