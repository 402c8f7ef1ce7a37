use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    let db = String::from("db");
    after!(clone(dbb) {
        println!("{db}");
    });
    "ok"
}

fn main() {}
