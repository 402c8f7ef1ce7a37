use after_runtime::{after, with_after};

// One error, rustc's, where the mistake is: no second copy from the attribute, no
// "can only be used inside" from the `after!` before it, and `after` counts as used.
#[with_after]
async fn handler() -> &'static str {
    let label = "audit";
    after! { println!("{label}"); }
    let broken = ;
    after! { println!("after the mistake"); }
    "ok"
}

fn main() {}
