use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    after!(name = "welcome-mail", name = "mail", {
        println!("mail");
    });
    "ok"
}

fn main() {}
