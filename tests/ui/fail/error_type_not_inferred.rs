use after_runtime::{after, with_after};

async fn audit() -> Result<(), std::io::Error> {
    Ok(())
}

#[with_after]
async fn handler(retry: bool) -> &'static str {
    // Only a block ending in a plain `Ok(())` gets a default error type; here the
    // user must name it, e.g. `Ok::<(), std::io::Error>(())`.
    after! {
        audit().await?;
        if retry { Ok(()) } else { Ok(()) }
    }
    "ok"
}

fn main() {}
