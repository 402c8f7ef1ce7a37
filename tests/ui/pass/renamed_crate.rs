//! `#[with_after(crate = "...")]` when the runtime is reached under another path.
#![deny(warnings)]
use after_runtime as background;
use axum::routing::get;
use axum::Router;

mod reexport {
    pub use after_runtime as inner;
}

#[background::with_after(crate = "reexport::inner")]
async fn handler() -> &'static str {
    background::after! { println!("renamed"); }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
