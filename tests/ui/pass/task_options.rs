//! Options before the block: a name, a timeout, both in either order, with a capture
//! list, in nested blocks and closures; and the function form.
#![deny(warnings)]
use std::sync::Arc;
use std::time::Duration;

use after_runtime::{after, after_with, with_after, TaskOptions};
use axum::routing::get;
use axum::Router;

const MAIL: TaskOptions = TaskOptions::new().name("welcome-mail");

#[with_after]
async fn handler() -> &'static str {
    let db = Arc::new(String::from("db"));
    let limit = Duration::from_secs(5);
    after!(name = "welcome-mail", { println!("mail"); });
    after!(timeout = Duration::from_millis(250), { println!("quick"); });
    after!(timeout = limit, name = "audit", clone(db) {
        println!("{db}");
        after!(name = "nested", {
            println!("nested");
        });
    });
    let tasks = || after!(name = "in-a-closure", { println!("closure"); });
    tasks();
    // `?` without a final `Ok(())` works with options too.
    after!(name = "parse", {
        let n: u32 = "7".parse()?;
        println!("{n}");
    });
    // A statement that looks like an option is a statement.
    let mut count = 0;
    after! { count = count + 1; println!("{count}"); }
    let _ = after_with(MAIL, async {});
    println!("{db} {count}");
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/", get(handler));
}
