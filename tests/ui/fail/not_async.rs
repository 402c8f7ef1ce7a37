use after_runtime::{after, with_after};

#[with_after]
fn handler() -> &'static str {
    after! {
        println!("never registered");
    }
    "ok"
}

fn main() {}
