//! A handler nested in another handler, with its own `#[with_after]`, keeps its
//! `after!` blocks: the outer attribute leaves it to its own.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    #[with_after]
    async fn inner() -> &'static str {
        after! { println!("inner"); }
        "inner"
    }
    let _app: Router = Router::new().route("/inner", get(inner));
    after! { println!("outer"); }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
