use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    let db = String::from("db");
    after!(clone(db.clone()) {
        println!("{db}");
    });
    "ok"
}

fn main() {}
