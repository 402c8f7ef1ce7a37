//! What a pending after task costs in memory: 100,000 no-op tasks held behind a gate,
//! measured as live heap bytes (a counting allocator) and as resident memory
//! (`VmRSS` / `VmHWM` from `/proc/self/status`, Linux).
//!
//! ```text
//! cargo run --release --no-default-features --example memory       # every shape, one process
//! cargo run --release --no-default-features --example memory -- 2  # one shape alone: 1, 2, 3, 3-owned-uri
//! ```
//!
//! The runtime has `max_concurrency(1)` and `max_pending(200_000)`. The first task
//! registered waits on a gate, so it holds the only slot and every later task stays
//! pending. Two shapes are measured, each on a fresh runtime:
//!
//! 1. one request registers 100,000 tasks: first while its response is not finished
//!    (the tasks wait in the request's scope), then once it is (they wait in the
//!    runtime's queue for a slot);
//! 2. 100,000 requests register one task each: every pending task also keeps its
//!    request's scope (method, URI, span, header and cookie slots) alive;
//! 3. the same over loopback through a real `axum::serve` (hyper HTTP/1.1, 8
//!    keep-alive connections), where hyper parses the URI as a slice of the
//!    connection's read buffer, and once more with a middleware outside `AfterLayer`
//!    that swaps that URI for an owned copy, to show what the scope's URI keeps alive.
//!
//! The overhead per task is the bytes per pending task minus the size of the task's
//! own future, which is printed from `std::mem::size_of_val` on an equivalent future.

use std::alloc::System;
use std::sync::Arc;

use after_runtime::{AfterLayer, AfterRuntime, Stats, after};
use after_workspace::{TestServer, process};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Tasks held pending in each shape.
const TASKS: u64 = 100_000;

/// The path every request asks for: a typical short API path.
const PATH: &str = "/orders/42?expand=items";

/// Live heap bytes and resident memory at one moment.
#[derive(Debug, Clone, Copy)]
struct Memory {
    heap: i64,
    rss_kib: i64,
    hwm_kib: i64,
}

impl Memory {
    fn now() -> Self {
        let stats = GLOBAL.stats();
        let heap = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
        let field = |name| process::status_kib(name).map_or(-1, |kib| kib as i64);
        Memory {
            heap,
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// One line of the result table: the change from `before` to `after` per task.
fn row(what: &str, before: Memory, after: Memory, future_bytes: usize) {
    let heap = (after.heap - before.heap) as f64 / TASKS as f64;
    let rss = (after.rss_kib - before.rss_kib) as f64 * 1024.0 / TASKS as f64;
    println!(
        "| {what} | {heap:.0} B | {:.0} B | {rss:.0} B | {:.1} MiB → {:.1} MiB | {:.1} MiB |",
        heap - future_bytes as f64,
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        after.hwm_kib as f64 / 1024.0,
    );
}

fn runtime() -> AfterRuntime {
    AfterRuntime::builder()
        .max_concurrency(1)
        .max_pending(200_000)
        .build()
}

/// The task every shape holds pending: a no-op.
async fn noop() {}

/// Registers the gate task: it holds the only slot until `gate` is notified.
fn register_gate(gate: &Arc<Notify>) {
    let gate = gate.clone();
    after(async move { gate.notified().await }).expect("inside AfterLayer");
}

async fn request(app: &Router) {
    let request = Request::get(PATH).body(Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    response.into_body().collect().await.expect("body");
}

/// Opens the gate and yields until every task has ended.
async fn drain(gate: &Notify, runtime: &AfterRuntime) -> Stats {
    gate.notify_one();
    loop {
        let stats = runtime.stats();
        if stats.pending + stats.running == 0 {
            return stats;
        }
        tokio::task::yield_now().await;
    }
}

/// Prints the counts while the tasks were held, opens the gate, and prints what the
/// heap keeps once every task has run.
async fn drain_and_report(gate: &Notify, runtime: &AfterRuntime, before: Memory, held: Stats) {
    println!("|   stats while held: {held:?} | | | | | |");
    let end = drain(gate, runtime).await;
    let drained = Memory::now();
    println!(
        "|   after the gate opened and all ran: heap {:+} B vs before; stats {end:?} | | | | | |",
        drained.heap - before.heap
    );
    assert_eq!(end.succeeded, TASKS + 1, "{end:?}");
}

/// Lets spawned tasks (the gate task) get their first poll.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Shape 1: one request registers `TASKS` tasks.
async fn one_request(future_bytes: usize) {
    let runtime = runtime();
    let gate = Arc::new(Notify::new());
    let held = Arc::new(std::sync::Mutex::new(None::<(Memory, Memory)>));

    let app = {
        let gate = gate.clone();
        let held = held.clone();
        Router::new()
            .route(
                "/orders/{id}",
                get(move || {
                    let gate = gate.clone();
                    let held = held.clone();
                    async move {
                        register_gate(&gate);
                        let before = Memory::now();
                        for _ in 0..TASKS {
                            after(noop()).expect("inside AfterLayer");
                        }
                        let inside = Memory::now();
                        *held.lock().expect("lock") = Some((before, inside));
                        "ok"
                    }
                }),
            )
            .layer(AfterLayer::new(runtime.clone()))
    };

    request(&app).await;
    settle().await;
    let released = Memory::now();
    let stats = runtime.stats();
    let (before, inside) = held.lock().expect("lock").expect("handler ran");
    row(
        "1 request × 100,000 tasks, response not finished (tasks in the request's scope)",
        before,
        inside,
        future_bytes,
    );
    row(
        "1 request × 100,000 tasks, response finished (tasks queued for a slot)",
        before,
        released,
        future_bytes,
    );
    drain_and_report(&gate, &runtime, before, stats).await;
}

/// Shape 2: `TASKS` requests register one task each.
async fn one_task_per_request(future_bytes: usize) {
    let runtime = runtime();
    let gate = Arc::new(Notify::new());
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                after(noop()).expect("inside AfterLayer");
                "ok"
            }),
        )
        .layer(AfterLayer::new(runtime.clone()));
    let gate_app = {
        let gate = gate.clone();
        Router::new()
            .route(
                "/orders/{id}",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        register_gate(&gate);
                        "ok"
                    }
                }),
            )
            .layer(AfterLayer::new(runtime.clone()))
    };

    request(&gate_app).await;
    settle().await;
    let before = Memory::now();
    for _ in 0..TASKS {
        request(&app).await;
    }
    settle().await;
    let held = Memory::now();
    let stats = runtime.stats();
    row(
        "100,000 requests × 1 task, responses finished (each task keeps its request's scope)",
        before,
        held,
        future_bytes,
    );
    drain_and_report(&gate, &runtime, before, stats).await;
}

/// Connections the loopback shape sends its requests on.
const CONNECTIONS: u64 = 8;

/// Replaces the request's URI, which hyper parsed as a slice of the connection's read
/// buffer, with an owned copy of it.
async fn owned_uri(
    mut request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let owned = Bytes::copy_from_slice(request.uri().to_string().as_bytes());
    *request.uri_mut() = Uri::from_maybe_shared(owned).expect("a URI stays valid");
    next.run(request).await
}

/// `GET path` on one keep-alive connection, body read to the end.
async fn get_on(sender: &mut http1::SendRequest<Empty<Bytes>>, authority: &str, path: &str) {
    sender.ready().await.expect("connection ready");
    let request = Request::get(format!("http://{authority}{path}"))
        .header(http::header::HOST, authority)
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert!(response.status().is_success());
    response.into_body().collect().await.expect("body");
}

/// Shape 3: `TASKS` requests over loopback, one task each.
async fn loopback(future_bytes: usize, own_the_uri: bool) {
    let runtime = runtime();
    let gate = Arc::new(Notify::new());
    let mut app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                after(noop()).expect("inside AfterLayer");
                "ok"
            }),
        )
        .route(
            "/gate",
            get({
                let gate = gate.clone();
                move || {
                    let gate = gate.clone();
                    async move {
                        register_gate(&gate);
                        "ok"
                    }
                }
            }),
        )
        .layer(AfterLayer::new(runtime.clone()));
    if own_the_uri {
        app = app.layer(axum::middleware::from_fn(owned_uri));
    }
    let server = TestServer::start(app).await.expect("server");

    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        let (sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    let authority = server.addr.to_string();
    get_on(&mut senders[0], &authority, "/gate").await;
    settle().await;
    let before = Memory::now();
    let workers: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let authority = authority.clone();
            tokio::spawn(async move {
                for _ in 0..TASKS / CONNECTIONS {
                    get_on(&mut sender, &authority, PATH).await;
                }
                sender
            })
        })
        .collect();
    let mut senders = Vec::new();
    for worker in workers {
        senders.push(worker.await.expect("worker"));
    }
    settle().await;
    let held = Memory::now();
    let stats = runtime.stats();
    row(
        if own_the_uri {
            "loopback server, 100,000 requests × 1 task, URI copied out of hyper's buffer by a middleware"
        } else {
            "loopback server (axum::serve, hyper HTTP/1.1), 100,000 requests × 1 task"
        },
        before,
        held,
        future_bytes,
    );
    println!("|   stats while held: {stats:?} | | | | | |");
    let end = drain(&gate, &runtime).await;
    drop(senders);
    server.stop().await.expect("server stopped");
    assert_eq!(end.succeeded, TASKS + 1, "{end:?}");
}

fn main() {
    after_workspace::note_metrics_feature("memory");
    let future_bytes = std::mem::size_of_val(&noop());
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("# Memory per pending after task\n");
    println!(
        "{TASKS} no-op tasks pending behind a gate; max_concurrency 1, max_pending 200,000; \
         size_of_val of the task's future: {future_bytes} B. Requests go through \
         `AfterLayer` in process (`oneshot`), path `{PATH}`.\n"
    );
    println!(
        "| shape | heap per pending task | heap overhead beyond the future | RSS per pending task | RSS before → after | peak RSS (VmHWM) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    tokio.block_on(async {
        // Warm lazies (router internals, tracing callsites) before measuring.
        let warm = runtime();
        let app = Router::new()
            .route(
                "/orders/{id}",
                get(|| async {
                    after(noop()).expect("inside AfterLayer");
                    "ok"
                }),
            )
            .layer(AfterLayer::new(warm.clone()));
        for _ in 0..100 {
            request(&app).await;
        }
        settle().await;

        // Later shapes reuse memory earlier ones freed, so their RSS growth reads low
        // (the heap counts stay exact). Name one shape to measure it alone.
        let only = std::env::args().nth(1);
        let run = |shape: &str| only.as_deref().is_none_or(|only| only == shape);
        if run("1") {
            one_request(future_bytes).await;
        }
        if run("2") {
            one_task_per_request(future_bytes).await;
        }
        if run("3") {
            loopback(future_bytes, false).await;
        }
        if run("3-owned-uri") {
            loopback(future_bytes, true).await;
        }
    });
    println!(
        "\nTarget: ≤ 512 B of runtime overhead per pending task (heap per task minus the \
         future's own size)."
    );
}
