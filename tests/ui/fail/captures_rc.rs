use std::rc::Rc;

use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    let counter = Rc::new(1);
    after! {
        println!("{counter}");
    }
    "ok"
}

fn main() {}
