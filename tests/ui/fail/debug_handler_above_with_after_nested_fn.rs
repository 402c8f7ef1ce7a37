use after_runtime::{after, with_after};

#[axum::debug_handler]
#[with_after]
async fn handler() -> String {
    fn helper() {
        after! { println!("nested"); }
    }
    helper();
    let f = || after! { println!("closure"); };
    f();
    String::new()
}

fn main() {}
