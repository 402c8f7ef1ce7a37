use after_runtime::after;

async fn handler() -> &'static str {
    after! {
        println!("this handler has no #[with_after]");
    }
    "ok"
}

fn main() {
    let _ = handler;
}
