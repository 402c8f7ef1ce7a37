use after_runtime::{after, with_after};

async fn audit() -> Result<(), std::io::Error> {
    Ok(())
}

#[with_after]
async fn handler() -> &'static str {
    // `?` needs the block to end in `Ok(())`.
    after! {
        audit().await?;
    }
    "ok"
}

fn main() {}
