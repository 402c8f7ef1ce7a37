//! Micro-benchmarks of what the after machinery costs a request, in process.
//!
//! Every benchmark drives an axum `Router` through `tower::ServiceExt::oneshot` on a
//! current-thread tokio runtime, reads the response body to its end (as a server
//! would), and then lets every task it started run to completion before the
//! iteration ends, so nothing piles up across iterations and the cost of running
//! the tasks is inside the measurement.
//!
//! ```text
//! cargo bench --bench overhead -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Groups:
//!
//! - `request`: no layer; a no-op layer of the same shape as `Router::layer` gives
//!   `AfterLayer` (axum boxes any layered route's future and body); `AfterLayer` with
//!   a handler that registers nothing; `After` wrapped around the whole router (the
//!   layer's own cost, no axum boxing); `#[with_after]` with one empty `after! {}`;
//!   a handler that `tokio::spawn`s the same empty future by hand.
//! - `tasks_per_request`: 1, 10 and 100 `after()` calls per request (throughput is
//!   in tasks, so criterion reports the per-task rate).
//! - `one_task`: register and complete one task that signals the benchmark, with
//!   `after()` versus `tokio::spawn` inside the same request, and a bare
//!   `tokio::spawn` with completion outside any request.
//!
//! At the end it prints the ratios the performance targets are stated in, read from
//! criterion's own estimates (the median of each benchmark).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use after_runtime::layer::After;
use after_runtime::{AfterLayer, AfterRuntime, after};
use after_workspace::handlers::{plain, spawn_noop, with_after_noop};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use criterion::{BenchmarkId, Criterion, Throughput};
use http::Request;
use http_body_util::{BodyExt, Either};
use tokio::runtime::{Runtime, RuntimeMetrics};
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_http::map_response_body::MapResponseBodyLayer;

/// The `after()` counts of the `tasks_per_request` group.
const TASK_COUNTS: [usize; 3] = [1, 10, 100];

async fn after_n<const N: usize>() -> &'static str {
    for _ in 0..N {
        after(async {}).expect("inside AfterLayer");
    }
    "ok"
}

async fn after_signal(State(done): State<Arc<Notify>>) -> &'static str {
    after(async move { done.notify_one() }).expect("inside AfterLayer");
    "ok"
}

async fn spawn_signal(State(done): State<Arc<Notify>>) -> &'static str {
    drop(tokio::spawn(async move { done.notify_one() }));
    "ok"
}

async fn nothing_with_state(State(_done): State<Arc<Notify>>) -> &'static str {
    "ok"
}

/// One request through `app`, its body read to the end.
async fn request(app: &Router) {
    let request = Request::get("/")
        .body(Body::empty())
        .expect("valid request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    black_box(response.into_body().collect().await.expect("body"));
}

/// Yields until every task on this runtime has ended: the request's after tasks (or
/// hand-spawned ones) run to completion inside the iteration that started them.
async fn drain(metrics: &RuntimeMetrics) {
    while metrics.num_alive_tasks() > 0 {
        tokio::task::yield_now().await;
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Every task registered on `runtime` ran and succeeded: nothing was rejected or left
/// pending, so the measurement covered complete tasks and memory stayed flat.
fn assert_all_completed(name: &str, runtime: &AfterRuntime) {
    let stats = runtime.stats();
    assert_eq!(stats.pending + stats.running, 0, "{name}: {stats:?}");
    assert_eq!(stats.succeeded, stats.registered, "{name}: {stats:?}");
}

/// Benchmarks one request through `app` per iteration, draining its tasks.
fn bench_request(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    app: &Router,
) {
    let metrics = rt.metrics();
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| async {
            request(app).await;
            drain(&metrics).await;
        });
    });
}

fn request_group(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("request");
    let runtime = AfterRuntime::builder().build();
    let layer = AfterLayer::new(runtime.clone());

    let no_layer = Router::new().route("/", get(plain));
    bench_request(
        &mut group,
        rt,
        BenchmarkId::from_parameter("no_layer"),
        &no_layer,
    );

    let layer_nothing = Router::new().route("/", get(plain)).layer(layer.clone());
    bench_request(
        &mut group,
        rt,
        BenchmarkId::from_parameter("layer_nothing"),
        &layer_nothing,
    );

    // The same shape as `Router::layer(AfterLayer)` with a layer that does nothing:
    // axum boxes every layered route's service, future and body, whatever the layer.
    let noop_layer = Router::new()
        .route("/", get(plain))
        .layer(MapResponseBodyLayer::new(|body: Body| {
            Either::<Body, Body>::Left(body)
        }));
    bench_request(
        &mut group,
        rt,
        BenchmarkId::from_parameter("noop_layer"),
        &noop_layer,
    );

    // `After` wrapped around the whole router: the layer's own cost, without axum's
    // boxing (what `tests/allocations.rs` checks).
    let wrapped = After::new(Router::new().route("/", get(plain)), runtime.clone());
    let metrics = rt.metrics();
    group.bench_function(BenchmarkId::from_parameter("after_wrapping_router"), |b| {
        b.to_async(rt).iter(|| async {
            let request = Request::get("/")
                .body(Body::empty())
                .expect("valid request");
            let response = wrapped.clone().oneshot(request).await.expect("infallible");
            black_box(response.into_body().collect().await.expect("body"));
            drain(&metrics).await;
        });
    });

    let with_after = Router::new()
        .route("/", get(with_after_noop))
        .layer(layer.clone());
    bench_request(
        &mut group,
        rt,
        BenchmarkId::from_parameter("with_after_one_empty"),
        &with_after,
    );

    let manual = Router::new().route("/", get(spawn_noop));
    bench_request(
        &mut group,
        rt,
        BenchmarkId::from_parameter("manual_spawn_one_empty"),
        &manual,
    );
    group.finish();
    assert_all_completed("request", &runtime);
}

fn tasks_per_request_group(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("tasks_per_request");
    let runtime = AfterRuntime::builder().build();
    let layer = AfterLayer::new(runtime.clone());
    for n in TASK_COUNTS {
        let handler = match n {
            1 => get(after_n::<1>),
            10 => get(after_n::<10>),
            100 => get(after_n::<100>),
            _ => unreachable!("TASK_COUNTS"),
        };
        let app = Router::new().route("/", handler).layer(layer.clone());
        group.throughput(Throughput::Elements(n as u64));
        bench_request(&mut group, rt, BenchmarkId::from_parameter(n), &app);
    }
    group.finish();
    assert_all_completed("tasks_per_request", &runtime);
}

fn one_task_group(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("one_task");
    let runtime = AfterRuntime::builder().build();
    let layer = AfterLayer::new(runtime.clone());
    let done = Arc::new(Notify::new());

    // Outside any request: the floor for "start a task and see it finish".
    group.bench_function("bare_spawn_join", |b| {
        b.to_async(rt)
            .iter(|| async { tokio::spawn(async {}).await.expect("no panic") });
    });
    group.bench_function("bare_spawn_signal", |b| {
        b.to_async(rt).iter(|| async {
            let signal = done.clone();
            drop(tokio::spawn(async move { signal.notify_one() }));
            done.notified().await;
        });
    });

    // The same request through the same layered router; only the handler differs.
    for (name, app) in [
        ("request_nothing", get(nothing_with_state)),
        ("request_spawn_signal", get(spawn_signal)),
        ("request_after_signal", get(after_signal)),
    ]
    .map(|(name, handler)| {
        let app = Router::new()
            .route("/", handler)
            .with_state(done.clone())
            .layer(layer.clone());
        (name, app)
    }) {
        let metrics = rt.metrics();
        let signals = name != "request_nothing";
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                request(&app).await;
                if signals {
                    done.notified().await;
                }
                drain(&metrics).await;
            });
        });
    }
    group.finish();
    assert_all_completed("one_task", &runtime);
}

fn main() {
    let started = SystemTime::now();
    let output = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/criterion"));
    let mut c = Criterion::default()
        .output_directory(&output)
        .configure_from_args();
    let rt = current_thread();
    request_group(&mut c, &rt);
    tasks_per_request_group(&mut c, &rt);
    one_task_group(&mut c, &rt);
    c.final_summary();
    Summary { output, started }.print();
}

/// Reads criterion's estimates back and prints the ratios the targets are stated in.
struct Summary {
    output: PathBuf,
    started: SystemTime,
}

impl Summary {
    /// The median time of `group/id` in nanoseconds, if it was measured in this run.
    fn median(&self, group: &str, id: &str) -> Option<f64> {
        let path = self
            .output
            .join(group)
            .join(id)
            .join("new")
            .join("estimates.json");
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified >= self.started);
        if !fresh {
            return None;
        }
        let json = std::fs::read_to_string(&path).ok()?;
        point_estimate(&json, "median")
    }

    fn print(&self) {
        let ns = |group: &str, id: &str| self.median(group, id);
        println!("\n## Summary (medians; ratios are time ratios, lower is cheaper)\n");
        println!("| benchmark | median | note |");
        println!("|---|---:|---|");
        let rows: [(&str, &str); 14] = [
            ("request", "no_layer"),
            ("request", "noop_layer"),
            ("request", "layer_nothing"),
            ("request", "after_wrapping_router"),
            ("request", "with_after_one_empty"),
            ("request", "manual_spawn_one_empty"),
            ("tasks_per_request", "1"),
            ("tasks_per_request", "10"),
            ("tasks_per_request", "100"),
            ("one_task", "bare_spawn_join"),
            ("one_task", "bare_spawn_signal"),
            ("one_task", "request_nothing"),
            ("one_task", "request_spawn_signal"),
            ("one_task", "request_after_signal"),
        ];
        for (group, id) in rows {
            let time = ns(group, id).map_or("not run".to_owned(), format_ns);
            println!("| {group}/{id} | {time} | |");
        }

        println!("\n| comparison | value | target |");
        println!("|---|---:|---|");
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        let no_layer = ns("request", "no_layer");
        let layer_nothing = ns("request", "layer_nothing");
        let with_after = ns("request", "with_after_one_empty");
        let manual = ns("request", "manual_spawn_one_empty");
        println!(
            "| layer_nothing / no_layer (time) | {} | throughput ≥ 0.98 ⇔ time ≤ 1.020 |",
            show(ratio(layer_nothing, no_layer))
        );
        println!(
            "| layer_nothing / noop_layer (time): AfterLayer vs a no-op layer of the same shape | {} | (for reference) |",
            show(ratio(layer_nothing, ns("request", "noop_layer")))
        );
        println!(
            "| after_wrapping_router / no_layer (time): After around the router, no axum boxing | {} | (for reference) |",
            show(ratio(ns("request", "after_wrapping_router"), no_layer))
        );
        println!(
            "| with_after_one_empty / manual_spawn_one_empty (time) | {} | throughput ≥ 0.95 ⇔ time ≤ 1.053 |",
            show(ratio(with_after, manual))
        );
        println!(
            "| with_after_one_empty / no_layer (time) | {} | throughput ≥ 0.90 ⇔ time ≤ 1.111 |",
            show(ratio(with_after, no_layer))
        );

        let marginal = |n: usize| {
            ns("tasks_per_request", &n.to_string())
                .zip(layer_nothing)
                .map(|(t, base)| (t - base) / n as f64)
        };
        for n in TASK_COUNTS {
            let whole = ns("tasks_per_request", &n.to_string()).map(|t| t / n as f64);
            println!(
                "| per task at {n}/request: whole request / n; (request − layer_nothing) / n | {}; {} | flat |",
                whole.map_or("n/a".to_owned(), format_ns),
                marginal(n).map_or("n/a".to_owned(), format_ns),
            );
        }
        println!(
            "| marginal per-task cost, 100 vs 1 | {} | ≤ 1.2 |",
            show(ratio(marginal(100), marginal(1)))
        );

        let base = ns("one_task", "request_nothing");
        let after_signal = ns("one_task", "request_after_signal");
        let spawn_signal = ns("one_task", "request_spawn_signal");
        let minus = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        println!(
            "| register+complete: after() / tokio::spawn, same request, marginal over request_nothing | {} | ≤ 1.5 |",
            show(ratio(minus(after_signal, base), minus(spawn_signal, base)))
        );
        println!(
            "| register+complete: after() marginal / bare_spawn_signal | {} | (for reference) |",
            show(ratio(
                minus(after_signal, base),
                ns("one_task", "bare_spawn_signal")
            ))
        );
        println!(
            "| whole request: request_after_signal / request_spawn_signal | {} | (for reference) |",
            show(ratio(after_signal, spawn_signal))
        );
        println!("\n(estimates read from {})", display(&self.output));
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn format_ns(ns: f64) -> String {
    if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// `"<key>":{..."point_estimate":<number>` from criterion's `estimates.json`, without
/// a JSON dependency.
fn point_estimate(json: &str, key: &str) -> Option<f64> {
    let section = &json[json.find(&format!("\"{key}\""))?..];
    let field = "\"point_estimate\":";
    let value = &section[section.find(field)? + field.len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}
