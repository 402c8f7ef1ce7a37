//! Associated functions in an `impl` block, `pub` / `pub(crate)`, doc comments and
//! other attributes kept.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

struct Handlers;

impl Handlers {
    /// Documented, and still documented after the attribute.
    #[with_after]
    #[allow(clippy::unused_async)]
    pub async fn public() -> &'static str {
        after! { println!("public"); }
        "ok"
    }

    #[with_after]
    pub(crate) async fn crate_visible() -> &'static str {
        after! { println!("crate"); }
        "ok"
    }
}

/// A free function with a doc comment.
#[with_after]
#[inline]
pub async fn free() -> &'static str {
    after! { println!("free"); }
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/a", get(Handlers::public))
        .route("/b", get(Handlers::crate_visible))
        .route("/c", get(free));
}
