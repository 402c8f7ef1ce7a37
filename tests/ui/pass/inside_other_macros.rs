//! `after!` inside another macro's tokens: a `tokio::select!` arm.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> &'static str {
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let _ = tx.send(1);
    tokio::select! {
        value = rx => {
            after! { println!("received {value:?}"); }
        }
        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
            after! { println!("timed out"); }
        }
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
