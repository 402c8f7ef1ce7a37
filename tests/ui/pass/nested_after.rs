//! An `after!` inside an `after!` block registers a nested task.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    after! {
        let agent = headers.get("user-agent").is_some();
        after! {
            println!("nested, sees cookies too: {}", cookies.iter().count());
        }
        println!("outer {agent}");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
