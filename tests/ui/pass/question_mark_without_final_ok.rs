//! `?` in a block that does not end in `Ok(..)`: the block returns
//! `Result<(), Box<dyn Error + Send + Sync>>`, `Ok(())` once its statements ran, so
//! `?` accepts any error. A block that ends in a `Result` value keeps it.
#![deny(warnings)]
use after_runtime::{after, with_after};
use axum::routing::get;
use axum::Router;

fn parse(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

async fn audit(_n: u32) -> Result<(), std::io::Error> {
    Ok(())
}

fn log(_n: u32) {}

#[with_after]
async fn handler() -> &'static str {
    let s = String::from("7");
    // The natural block: no final `Ok(())`.
    after!(clone(s) {
        let n = parse(&s)?;
        audit(n).await?;
    });
    // `?` inside an `if`.
    after!(clone(s) {
        if !s.is_empty() {
            audit(parse(&s)?).await?;
        }
    });
    // A final `()` value after `?`: a call, a `match`, another macro.
    after!(clone(s) {
        let n = parse(&s)?;
        log(n)
    });
    after!(clone(s) {
        match parse(&s)? {
            0 => log(0),
            _ => {}
        }
    });
    after!(clone(s) {
        let n = parse(&s)?;
        println!("{n}")
    });
    // A final `Result` value keeps its error type.
    after!(clone(s) {
        let n = parse(&s).map_err(std::io::Error::other)?;
        audit(n).await
    });
    // `?` in another macro's input; `?s` in `tracing` is not a `?`.
    after!(clone(s) {
        println!("{}", parse(&s)?);
        tracing::info!(?s, "parsed");
    });
    // A nested `after!` last.
    after! {
        parse(&s)?;
        after! { println!("nested"); }
    }
    "ok"
}

/// Blocks with `?` that never end normally, or end early.
#[with_after]
async fn diverging() -> &'static str {
    after! {
        parse("1")?;
        todo!("send the receipt")
    }
    after! {
        parse("1")?;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    }
    after! {
        if parse("1")? == 0 {
            return Ok(());
        }
        panic!("unexpected");
    }
    "ok"
}

fn main() {
    let _app: Router = Router::new()
        .route("/", get(handler))
        .route("/diverging", get(diverging));
}
