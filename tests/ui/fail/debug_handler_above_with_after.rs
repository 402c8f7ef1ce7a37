use after_runtime::{after, with_after};
use axum::extract::Json;
use axum::routing::post;
use axum::Router;

#[axum::debug_handler]
#[with_after]
async fn handler(Json(value): Json<u32>) -> String {
    after! { println!("{value}"); }
    after! { println!("second block"); }
    value.to_string()
}

fn main() {
    let _app: Router = Router::new().route("/", post(handler));
}
