//! `after!` inside closures and async blocks: borrowed ones, and `move` ones that
//! outlive the handler (`tokio::spawn`).
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    let register = |label: &'static str| {
        after! { println!("from a closure: {label}"); }
    };
    register("one");
    register("two");
    async {
        after! { println!("from an awaited async block"); }
    }
    .await;
    let spawned = tokio::spawn(async move {
        after! { println!("from a spawned task"); }
    });
    let _ = spawned.await;
    let owned = move || {
        after! { println!("from a move closure"); }
    };
    owned();
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
