//! `after!(clone(a, b) { ... })` clones the named variables into the task, so they
//! stay usable after it and across loop iterations.
#![deny(warnings)]
use std::sync::Arc;

use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler() -> String {
    let db = Arc::new(String::from("db"));
    let tags = vec!["a".to_owned(), "b".to_owned()];
    for tag in &tags {
        let tag = tag.clone();
        after!(clone(db) {
            println!("{db} {tag}");
        });
    }
    after!(clone(db, tags) {
        println!("{db} {}", tags.len());
    });
    format!("{db} {}", tags.len())
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
