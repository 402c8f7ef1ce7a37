//! What one request costs in CPU instructions, per variant: a figure the machine's
//! noise cannot move.
//!
//! Requests go through an axum `Router` in process (`tower::ServiceExt::oneshot`) on
//! a two-worker tokio runtime, 16 requests in flight; each response body is read to
//! its end and every after task runs to completion. Run it under callgrind, which
//! counts instructions exactly, one variant per process:
//!
//! ```text
//! cargo build --release --no-default-features --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions /with-after 50000
//! ```
//!
//! and divide the `I refs` total by the requests it prints. Without valgrind it
//! prints CPU time per request, which the machine's load does move.
//!
//! Variants: `/plain`, `/noop-layer` (a no-op body-mapping layer: what axum's
//! `MethodRouter::layer` costs any layer), `/layer` (`AfterLayer`, nothing
//! registered), `/spawn` (`tokio::spawn` of a no-op future in the handler),
//! `/after-fn` (`after()` of a no-op future), `/with-after` (`#[with_after]` with
//! one empty `after!`), and `/spawn-yield` and `/with-after-yield` (the same two
//! with a task that waits once before it ends, as a task awaiting I/O does),
//! `/noop-layer-spawn` (the manual spawn under the same no-op layer, so that
//! `/with-after` minus it is what `#[with_after]` adds over a hand-written spawn
//! under the same layer stack) and `/dedicated-with-after` (`/with-after` on a
//! runtime with `dedicated_threads(1)`: the task starts on another thread). A task
//! that waits makes the workers park and wake each other, which under valgrind (it
//! runs one thread at a time) now and then costs several times the usual count: for
//! those two, take the lowest of a few runs.

use std::time::Instant;

use after_runtime::{AfterLayer, AfterRuntime};
use after_workspace::handlers::{
    after_noop, plain, spawn_noop, spawn_yield, with_after_noop, with_after_yield,
};
use after_workspace::process;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::map_response_body::MapResponseBodyLayer;

/// Requests in flight at once.
const CONCURRENCY: usize = 16;

fn app(runtime: &AfterRuntime, dedicated: &AfterRuntime) -> Router {
    let layer = AfterLayer::new(runtime.clone());
    let noop_layer = || MapResponseBodyLayer::new(|body: Body| body);
    Router::new()
        .route("/plain", get(plain))
        .route("/noop-layer", get(plain).layer(noop_layer()))
        .route("/noop-layer-spawn", get(spawn_noop).layer(noop_layer()))
        .route(
            "/dedicated-with-after",
            get(with_after_noop).layer(AfterLayer::new(dedicated.clone())),
        )
        .route("/layer", get(plain).layer(layer.clone()))
        .route("/spawn", get(spawn_noop))
        .route("/after-fn", get(after_noop).layer(layer.clone()))
        .route("/with-after", get(with_after_noop).layer(layer.clone()))
        .route("/spawn-yield", get(spawn_yield))
        .route("/with-after-yield", get(with_after_yield).layer(layer))
        // As `axum::serve` does: routes are built once, not per request.
        .with_state(())
}

fn main() {
    after_workspace::note_metrics_feature("instructions");
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/with-after".to_owned());
    let requests: usize = args
        .next()
        .map_or(200_000, |n| n.parse().expect("requests"));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let runtime = AfterRuntime::builder().build();
    // Built only for its variant: its thread would add to every other count.
    let dedicated = if path == "/dedicated-with-after" {
        AfterRuntime::builder().dedicated_threads(1).build()
    } else {
        AfterRuntime::builder().build()
    };
    let app = app(&runtime, &dedicated);
    let path: &'static str = path.leak();

    let (cpu, wall) = tokio.block_on(async {
        let cpu = process::cpu_time();
        let start = Instant::now();
        let loops: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    for _ in 0..requests / CONCURRENCY {
                        let request = http::Request::get(path)
                            .body(Body::empty())
                            .expect("request");
                        let response = app.clone().oneshot(request).await.expect("infallible");
                        assert!(
                            response.status().is_success(),
                            "{path}: {}",
                            response.status()
                        );
                        response.into_body().collect().await.expect("body");
                        // As a connection waiting for its next request would.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in loops {
            handle.await.expect("request loop");
        }
        // Let every after task finish inside the measurement.
        while runtime.stats().pending + runtime.stats().running > 0 {
            tokio::task::yield_now().await;
        }
        // Tasks on another thread: wait without spinning, which under valgrind
        // (one thread at a time) would count millions of instructions.
        dedicated.wait_idle().await;
        (process::cpu_time() - cpu, start.elapsed())
    });

    let done = (requests / CONCURRENCY * CONCURRENCY) as f64;
    let (stats, on_threads) = (runtime.stats(), dedicated.stats());
    assert_eq!(
        stats.succeeded + on_threads.succeeded,
        stats.registered + on_threads.registered,
        "every task ran: {stats:?} {on_threads:?}"
    );
    println!(
        "{path}: {done} requests, {:.3} µs CPU and {:.3} µs wall per request; {} after tasks",
        cpu.as_secs_f64() * 1e6 / done,
        wall.as_secs_f64() * 1e6 / done,
        stats.succeeded + on_threads.succeeded,
    );
}
