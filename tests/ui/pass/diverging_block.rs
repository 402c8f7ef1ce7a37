//! A block that never ends normally (`todo!()`, `panic!`, an endless loop): its value
//! is the never type `!` under edition 2024, and it is a task like any other.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn unfinished() -> &'static str {
    after! { todo!("send the receipt") }
    "ok"
}

#[with_after]
async fn watcher() -> &'static str {
    after! {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/a", get(unfinished))
        .route("/b", get(watcher));
}
