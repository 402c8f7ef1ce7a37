//! `?` in a block ending in `Ok(())`: errors of any type are boxed; a block may
//! also name its error type itself.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

async fn audit() -> Result<(), std::io::Error> {
    Ok(())
}

async fn notify() -> Result<(), std::fmt::Error> {
    Ok(())
}

#[with_after]
async fn handler() -> &'static str {
    after! {
        audit().await?;
        notify().await?;
        Ok(())
    }
    after! {
        audit().await?;
        Ok::<(), std::io::Error>(())
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
