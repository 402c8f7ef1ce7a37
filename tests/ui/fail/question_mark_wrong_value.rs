use after_runtime::{after, with_after};

fn parse(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

#[with_after]
async fn handler() -> &'static str {
    // With `?`, a block still ends in `()` or a `Result`, not another value.
    after! {
        let n = parse("7")?;
        n
    }
    // The block returns a `Result`, so `?` on an `Option` needs an error.
    after! {
        let first: Option<u32> = None;
        let n = first?;
        println!("{n}");
    }
    "ok"
}

fn main() {}
