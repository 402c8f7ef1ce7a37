use after_runtime::{after, with_after};

#[with_after(timeout = 5)]
async fn handler() -> &'static str {
    after! { println!("x"); }
    "ok"
}

fn main() {}
