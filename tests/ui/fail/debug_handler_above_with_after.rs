use after_runtime::{after, with_after};
use axum::extract::Json;

#[axum::debug_handler]
#[with_after]
async fn handler(Json(value): Json<u32>) -> String {
    after! { println!("{value}"); }
    value.to_string()
}

fn main() {}
