//! A soak run: floods 200,000 tasks through a bounded runtime over loopback and
//! prints peak memory and the final counts, to show memory stays bounded and no task
//! goes uncounted.
//!
//! ```text
//! cargo run --release --example soak            # 20,000 requests × 10 tasks
//! SOAK_REQUESTS=50000 cargo run --release --example soak
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use after_runtime::{AfterLayer, AfterRuntime, after};
use after_workspace::{Client, TestServer, Version, process};
use axum::Router;
use axum::routing::get;

const TASKS_PER_REQUEST: u64 = 10;
const CONNECTIONS: u64 = 32;

/// Peak and current resident memory, in KiB, from `/proc/self/status` (Linux).
fn memory_kib() -> (u64, u64) {
    let field = |name| process::status_kib(name).unwrap_or(0);
    (field("VmHWM:"), field("VmRSS:"))
}

async fn handler() -> &'static str {
    for i in 0..TASKS_PER_REQUEST {
        // Rejections past `max_pending` are counted by the runtime; the soak goes on.
        let _ = after(async move {
            tokio::time::sleep(Duration::from_millis(1 + i % 3)).await;
            if i == 7 {
                return Err("every tenth task fails, to exercise the error path");
            }
            Ok(())
        });
    }
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), after_workspace::BoxError> {
    let requests: u64 = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = AfterRuntime::builder()
        .max_concurrency(256)
        .max_pending(10_000)
        .build();
    let app = Router::new()
        .route("/", get(handler))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await?;
    let (_, rss_before) = memory_kib();
    println!(
        "soak: {requests} requests × {TASKS_PER_REQUEST} tasks over {CONNECTIONS} connections to {}",
        server.addr
    );

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (next, url) = (next.clone(), server.url("/"));
        workers.push(tokio::spawn(async move {
            let client = Client::new(Version::Http1);
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                client.get(&url).await.expect("request");
            }
        }));
    }
    let progress = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (peak, rss) = memory_kib();
                let s = runtime.stats();
                println!(
                    "  {:>5.1} s  registered {:>7}  pending {:>6}  running {:>4}  rss {:>6} KiB  peak {:>6} KiB",
                    started.elapsed().as_secs_f64(),
                    s.registered,
                    s.pending,
                    s.running,
                    rss,
                    peak
                );
            }
        })
    };
    for worker in workers {
        worker.await?;
    }
    server.stop().await?;
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    progress.abort();

    let (peak, rss) = memory_kib();
    let s = report.stats;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    println!("memory: before {rss_before} KiB, after {rss} KiB, peak {peak} KiB");
    println!("final: {s:?}");
    println!("{report}");
    assert_eq!(s.registered, requests * TASKS_PER_REQUEST);
    assert_eq!(s.settled(), s.registered, "every task reached an end");
    Ok(())
}
