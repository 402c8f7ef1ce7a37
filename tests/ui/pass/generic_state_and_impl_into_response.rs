//! A handler generic over its state, returning `impl IntoResponse` and
//! `Result<impl IntoResponse, E>`.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

trait Store: Clone + Send + Sync + 'static {
    fn name(&self) -> String;
}

#[derive(Clone)]
struct Memory;

impl Store for Memory {
    fn name(&self) -> String {
        "memory".to_owned()
    }
}

#[with_after]
async fn generic<S: Store>(State(store): State<S>) -> impl IntoResponse {
    after! { println!("stored in {}", store.name()); }
    (StatusCode::CREATED, "ok")
}

#[with_after]
async fn fallible(State(store): State<Memory>) -> Result<impl IntoResponse, StatusCode> {
    let name = store.name();
    after! { println!("{name}"); }
    Ok("ok")
}

fn main() {
    let _app: Router = Router::new()
        .route("/generic", get(generic::<Memory>))
        .route("/fallible", get(fallible))
        .with_state(Memory);
}
