use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    struct Mailer;
    impl Mailer {
        fn send(&self) {
            after! { println!("a method nested in a handler cannot see the request"); }
        }
    }
    Mailer.send();
    "ok"
}

fn main() {}
