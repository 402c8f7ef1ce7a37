// `after(future)` is a plain function: its async block is not rewritten, so `?`
// needs the block to end in a `Result` with a named error type, as any async block
// does: `Ok::<(), YourError>(())`.

fn parse(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

async fn without_ok() {
    let _ = after_runtime::after(async {
        let n = parse("7")?;
        println!("{n}");
    });
}

async fn with_untyped_ok() {
    let _ = after_runtime::after(async {
        let n = parse("7")?;
        println!("{n}");
        Ok(())
    });
}

fn main() {}
