use after_runtime::{after, with_after};

#[with_after]
async fn handler() -> &'static str {
    fn helper() {
        after! { println!("a nested fn cannot see the request"); }
    }
    helper();
    "ok"
}

fn main() {}
