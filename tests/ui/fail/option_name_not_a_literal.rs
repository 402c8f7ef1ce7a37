use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    after!(name = String::from("welcome-mail"), {
        println!("mail");
    });
    "ok"
}

fn main() {}
