use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    after! {
        42
    }
    "ok"
}

fn main() {}
