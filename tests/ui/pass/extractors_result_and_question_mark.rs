//! A handler with `State`, `Path`, `Json` last, a `Result` return and `?`.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

#[derive(Clone)]
struct Db;

impl Db {
    async fn insert(&self, _name: &str) -> Result<u64, StatusCode> {
        Ok(1)
    }
}

#[with_after]
async fn create(
    State(db): State<Db>,
    Path(tenant): Path<String>,
    Json(name): Json<String>,
) -> Result<Json<u64>, StatusCode> {
    let id = db.insert(&name).await?;
    after! {
        let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("?");
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        println!("{tenant} created {id} for {agent} ({session:?})");
    }
    Ok(Json(id))
}

fn main() {
    let _app: Router = Router::new().route("/{tenant}/items", post(create)).with_state(Db);
}
