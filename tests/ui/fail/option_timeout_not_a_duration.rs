use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    after!(timeout = 5, {
        println!("mail");
    });
    "ok"
}

fn main() {}
