//! What the durable hand-off costs, over loopback on SQLite (release build):
//!
//! - latency: p50 of a handler that registers one `after_durable` job, against the
//!   same handler (same layers) registering nothing; sequential requests on one
//!   HTTP/1.1 connection, interleaved, with the workers running;
//! - throughput: jobs per second from the first request until the workers have run
//!   them all, against pushing the same jobs to apalis's `SqliteStorage` directly
//!   (same workers, same concurrency of producers).
//!
//! `cargo bench -p after-durable --bench handoff`; `HANDOFF_JOBS` (default 2000) and
//! `HANDOFF_REQUESTS` (default 2000) size it.

use std::time::{Duration, Instant};

use after_durable::{Durable, DurableLayer, Job, JobContext, JobError, after_durable};
use after_runtime::{AfterLayer, AfterRuntime};
use apalis_core::backend::TaskSink;
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    const NAME: &'static str = "bench-noop";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<(), JobError> {
        std::hint::black_box(self.n);
        Ok(())
    }
}

const PRODUCERS: usize = 32;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn wait_done(durable: &Durable, target: u64) {
    loop {
        if durable.status_counts().await.unwrap().done >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to
    // run: then only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let jobs = env("HANDOFF_JOBS", 2000);
    let requests = env("HANDOFF_REQUESTS", 2000);
    let path = std::env::temp_dir().join(format!("after-durable-bench-{}.db", std::process::id()));
    let url = format!("sqlite:{}", path.display());
    let durable = Durable::builder()
        .hold(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(20))
        .open(&url)
        .await
        .unwrap();
    let workers = durable
        .workers()
        .concurrency(8)
        .job::<Noop>(())
        .start()
        .await
        .unwrap();
    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route("/plain", post(|| async { "ok" }))
        .route(
            "/durable",
            post(|| async {
                after_durable(Noop { n: 1 }).unwrap();
                "ok"
            }),
        )
        .layer(DurableLayer::new(durable.clone()))
        .layer(AfterLayer::new(runtime.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let send = move |path: &'static str| {
        let client = client.clone();
        async move {
            let request = http::Request::post(format!("http://{addr}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = client.request(request).await.unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap();
        }
    };

    // Latency, interleaved so that drift hits both alike.
    for _ in 0..200 {
        send("/plain").await;
        send("/durable").await;
    }
    let (mut plain, mut durable_samples) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        let start = Instant::now();
        send("/plain").await;
        plain.push(start.elapsed());
        let start = Instant::now();
        send("/durable").await;
        durable_samples.push(start.elapsed());
    }
    let (plain_p50, durable_p50) = (p50(plain), p50(durable_samples));
    let added = durable_p50.saturating_sub(plain_p50);
    wait_done(&durable, (200 + requests) as u64).await;

    // Throughput, three rounds each, alternating; the median round is reported.
    let mut handoff_rates = Vec::new();
    let mut direct_rates = Vec::new();
    for _ in 0..3 {
        let before = durable.status_counts().await.unwrap().done;
        let start = Instant::now();
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let send = send.clone();
            let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
            producers.push(tokio::spawn(async move {
                for _ in 0..share {
                    send("/durable").await;
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        wait_done(&durable, before + jobs as u64).await;
        handoff_rates.push(jobs as f64 / start.elapsed().as_secs_f64());

        let before = durable.status_counts().await.unwrap().done;
        let storage = apalis_sqlite::SqliteStorage::<Noop>::new(durable.pool())
            .with_config(apalis_sqlite::Config::default().queue(Noop::NAME));
        let start = Instant::now();
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let mut storage = storage.clone();
            let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
            producers.push(tokio::spawn(async move {
                for n in 0..share {
                    storage.push(Noop { n: n as u64 }).await.unwrap();
                }
            }));
        }
        for p in producers {
            p.await.unwrap();
        }
        wait_done(&durable, before + jobs as u64).await;
        direct_rates.push(jobs as f64 / start.elapsed().as_secs_f64());
    }
    handoff_rates.sort_by(f64::total_cmp);
    direct_rates.sort_by(f64::total_cmp);
    let (handoff, direct) = (handoff_rates[1], direct_rates[1]);
    let ratio = handoff / direct;

    println!(
        "handoff benchmark (SQLite, loopback, {requests} sequential requests each, {jobs} jobs x 3 rounds, {PRODUCERS} producers, 8 workers)"
    );
    println!(
        "latency p50: plain {:.3} ms, with after_durable {:.3} ms, added {:.3} ms (limit 1 ms): {}",
        plain_p50.as_secs_f64() * 1e3,
        durable_p50.as_secs_f64() * 1e3,
        added.as_secs_f64() * 1e3,
        if added <= Duration::from_millis(1) {
            "ok"
        } else {
            "OVER"
        }
    );
    println!(
        "throughput: hand-off {handoff:.0} jobs/s, apalis push {direct:.0} jobs/s, ratio {ratio:.2} (limit 0.80): {}",
        if ratio >= 0.8 { "ok" } else { "UNDER" }
    );
    let c = durable.counts();
    println!(
        "counts: registered {} persisted {} persist_failed {} released {} started {} succeeded {}",
        c.registered, c.persisted, c.persist_failed, c.released, c.started, c.succeeded
    );
    server.abort();
    runtime.shutdown(Duration::from_secs(10)).await;
    workers.shutdown(Duration::from_secs(10)).await;
    durable.close(Duration::from_secs(10)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
