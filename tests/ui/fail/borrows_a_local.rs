use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    let name = String::from("ada");
    let borrowed: &str = &name;
    after! {
        println!("{borrowed}");
    }
    "ok"
}

fn main() {}
