//! `after!` in statement and expression position, nested blocks, `if`/`match` arms,
//! loops and `let else`.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::extract::Path;
use axum::routing::get;
use axum::Router;

#[with_after]
async fn handler(Path(n): Path<u32>) -> &'static str {
    after! { println!("statement"); }
    let () = after! { println!("expression") };
    {
        after! { println!("nested block"); }
    }
    if n > 1 {
        after! { println!("if arm {n}"); }
    } else {
        after! { println!("else arm"); }
    }
    match n {
        0 => after! { println!("match arm") },
        _ => {}
    }
    for i in 0..n {
        after! { println!("iteration {i}"); }
    }
    let mut left = n;
    while left > 0 {
        left -= 1;
        after! { println!("while {left}"); }
    }
    let Some(half) = n.checked_div(2) else {
        after! { println!("let else"); }
        return "zero";
    };
    after! { println!("half {half}"); }
    "ok"
}

fn main() {
    let _app: Router = Router::new().route("/{n}", get(handler));
}
