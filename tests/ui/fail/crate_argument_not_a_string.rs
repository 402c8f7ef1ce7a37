use after_runtime::{after, with_after};

#[with_after(crate = after_runtime)]
async fn handler() -> &'static str {
    after! { println!("x"); }
    "ok"
}

fn main() {}
