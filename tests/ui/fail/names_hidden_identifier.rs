use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    after! { println!("x"); }
    let _ = &__after_context;
    "ok"
}

fn main() {}
