//! Tasks run away from the connections: on threads of the runtime's own
//! (`dedicated_threads`) or on a runtime the application gives (`handle`). Every
//! semantic holds there as on the serving runtime; the own threads run below the
//! request path's priority and end with the runtime, shut down or dropped.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, Builder, after, outcome, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::{Events, Gate, Handoff, assert_accounted};

/// Where the tasks of a test's runtime run.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// `dedicated_threads(2)`.
    OwnThreads,
    /// `handle(..)` of a runtime the test builds.
    Handle,
}

const PLACES: [Place; 2] = [Place::OwnThreads, Place::Handle];

/// An `AfterRuntime` whose tasks run on threads named `threads`, and, for
/// `Place::Handle`, the application's runtime that owns them.
struct Elsewhere {
    runtime: AfterRuntime,
    background: Option<tokio::runtime::Runtime>,
}

impl Elsewhere {
    /// `builder`'s runtime, its tasks on threads named `threads` (at most 15 bytes,
    /// unique to the test: the tests share one process).
    fn new(place: Place, builder: Builder, threads: &str) -> Self {
        let (runtime, background) = match place {
            Place::OwnThreads => (builder.dedicated_threads(2).thread_name(threads), None),
            Place::Handle => {
                let background = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(threads)
                    .enable_all()
                    .build()
                    .unwrap();
                (
                    builder.handle(background.handle().clone()),
                    Some(background),
                )
            }
        };
        Elsewhere {
            runtime: runtime.build(),
            background,
        }
    }

    /// `app` under this runtime's `AfterLayer`, served on loopback.
    async fn serve(&self, app: Router) -> TestServer {
        serve(&self.runtime, app).await
    }
}

/// `app` under `runtime`'s `AfterLayer`, served on loopback.
async fn serve(runtime: &AfterRuntime, app: Router) -> TestServer {
    TestServer::start(app.layer(AfterLayer::new(runtime.clone())))
        .await
        .unwrap()
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        // Dropping a tokio runtime in an async context panics.
        if let Some(background) = self.background.take() {
            background.shutdown_background();
        }
    }
}

/// The name of the thread this runs on.
fn thread() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

#[derive(Clone)]
struct Streamed {
    chunks: Handoff<mpsc::Receiver<Bytes>>,
    events: Events,
}

#[with_after]
async fn streamed(State(s): State<Streamed>) -> (StatusCode, Body) {
    let events = s.events.clone();
    after! {
        let outcome = outcome().expect("inside a task");
        events.send(format!("{} {:?} {:?}", thread(), outcome.status(), outcome.delivery()));
    }
    let chunks = s.chunks.take();
    let body = Body::from_stream(futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    }));
    (StatusCode::CREATED, body)
}

#[tokio::test]
async fn tasks_start_after_the_response_on_the_other_threads_and_see_its_outcome() {
    for place in PLACES {
        for version in Version::BOTH {
            let elsewhere = Elsewhere::new(place, AfterRuntime::builder(), "aft-start");
            let runtime = &elsewhere.runtime;
            let (events, mut rx) = Events::new();
            let (chunk_tx, chunk_rx) = mpsc::channel(4);
            let app = Router::new()
                .route("/", get(streamed))
                .with_state(Streamed {
                    chunks: Handoff::new(chunk_rx),
                    events,
                });
            let server = elsewhere.serve(app).await;

            let request = http::Request::get(server.url("/"))
                .body(Full::default())
                .unwrap();
            let client = Client::new(version);
            let mut body = within(client.send(request)).await.unwrap().into_body();
            chunk_tx.send(Bytes::from_static(b"first")).await.unwrap();
            within(body.frame()).await.unwrap().unwrap();
            // Part of the body is out: the task is registered, counted, not started.
            let stats = runtime.stats();
            assert_eq!(
                (stats.registered, stats.pending, stats.running),
                (1, 1, 0),
                "{place:?} {version:?}"
            );
            assert!(rx.try_recv().is_err());

            drop(chunk_tx);
            within(body.collect()).await.unwrap();
            assert_eq!(
                within(rx.recv()).await.unwrap(),
                "aft-start Some(201) Delivered",
                "{place:?} {version:?}"
            );
            runtime.wait_idle().await;
            assert_eq!(runtime.stats().succeeded, 1, "{place:?} {version:?}");
            assert_accounted(runtime);
            server.stop().await.unwrap();
        }
    }
}

#[with_after]
async fn nests(State(events): State<Events>) -> &'static str {
    after!(clone(events) {
        events.send(format!("block on {}", thread()));
        after!(clone(events) {
            events.send(format!("nested block on {}", thread()));
        });
        let inner = events.clone();
        after(async move { inner.send(format!("after() on {}", thread())) }).unwrap();
    });
    "ok"
}

#[tokio::test]
async fn nested_blocks_and_after_from_a_task_run_on_the_other_threads_too() {
    for place in PLACES {
        for version in Version::BOTH {
            let elsewhere = Elsewhere::new(place, AfterRuntime::builder(), "aft-nest");
            let runtime = &elsewhere.runtime;
            let (events, mut rx) = Events::new();
            let server = elsewhere
                .serve(Router::new().route("/", get(nests)).with_state(events))
                .await;

            let response = within(Client::new(version).get(&server.url("/")))
                .await
                .unwrap();
            assert_eq!(response.text(), "ok");
            assert_eq!(
                crate::next_sorted(&mut rx, 3).await,
                [
                    "after() on aft-nest",
                    "block on aft-nest",
                    "nested block on aft-nest"
                ],
                "{place:?} {version:?}"
            );
            runtime.wait_idle().await;
            let stats = runtime.stats();
            assert_eq!(
                (stats.registered, stats.succeeded),
                (3, 3),
                "{place:?} {version:?}"
            );
            server.stop().await.unwrap();
        }
    }
}

#[with_after]
async fn misbehaves() -> &'static str {
    after!(timeout = Duration::from_millis(20), {
        std::future::pending::<()>().await;
    });
    after! {
        Err("the relay refused")?;
    }
    after! {
        panic!("a bug in the after work");
    }
    "still answered"
}

#[tokio::test]
async fn timeouts_failures_and_panics_there_are_counted_and_spare_the_response() {
    for place in PLACES {
        for version in Version::BOTH {
            // The runtime's own timeout is a minute; the block's 20 ms wins.
            let builder = AfterRuntime::builder().task_timeout(Duration::from_secs(60));
            let elsewhere = Elsewhere::new(place, builder, "aft-fail");
            let runtime = &elsewhere.runtime;
            let server = elsewhere
                .serve(Router::new().route("/", get(misbehaves)))
                .await;

            let response = within(Client::new(version).get(&server.url("/")))
                .await
                .unwrap();
            assert_eq!(response.text(), "still answered");
            within(runtime.wait_idle()).await;
            let stats = runtime.stats();
            assert_eq!(
                (stats.timed_out, stats.failed, stats.panicked),
                (1, 1, 1),
                "{place:?} {version:?}: {stats:?}"
            );
            assert_accounted(runtime);
            // The threads survive a panic: the next request's tasks run.
            within(Client::new(version).get(&server.url("/")))
                .await
                .unwrap();
            within(runtime.wait_idle()).await;
            assert_eq!(runtime.stats().panicked, 2, "{place:?} {version:?}");
            server.stop().await.unwrap();
        }
    }
}

#[derive(Clone)]
struct Held {
    gate: Gate,
    events: Events,
}

#[with_after]
async fn held(State(s): State<Held>) -> &'static str {
    after! {
        s.events.send("started");
        s.gate.wait().await;
        s.events.send(format!("finished on {}", thread()));
    }
    "ok"
}

#[tokio::test]
async fn shutdown_drains_the_tasks_there() {
    for place in PLACES {
        for version in Version::BOTH {
            let elsewhere = Elsewhere::new(place, AfterRuntime::builder(), "aft-drain");
            let runtime = elsewhere.runtime.clone();
            let (events, mut rx) = Events::new();
            let gate = Gate::new();
            let state = Held {
                gate: gate.clone(),
                events,
            };
            let server = elsewhere
                .serve(Router::new().route("/", get(held)).with_state(state))
                .await;
            within(Client::new(version).get(&server.url("/")))
                .await
                .unwrap();
            assert_eq!(within(rx.recv()).await.unwrap(), "started");
            server.stop().await.unwrap();

            let shutdown = tokio::spawn({
                let runtime = runtime.clone();
                async move { runtime.shutdown(Duration::from_secs(60)).await }
            });
            // The drain waits for the held task, which then finishes normally.
            tokio::task::yield_now().await;
            assert!(!shutdown.is_finished(), "{place:?} {version:?}");
            gate.open();
            assert_eq!(
                within(rx.recv()).await.unwrap(),
                "finished on aft-drain",
                "{place:?} {version:?}"
            );
            let report = within(shutdown).await.unwrap();
            assert_eq!(
                (report.stats.succeeded, report.unfinished.len()),
                (1, 0),
                "{place:?} {version:?}: {report}"
            );
        }
    }
}

#[derive(Clone)]
struct Pinging {
    client: Client,
    ping: Arc<OnceLock<String>>,
    events: Events,
}

async fn pings(State(s): State<Pinging>) {
    after(async move {
        let url = s.ping.get().expect("set before the first request");
        let answer = s.client.get(url).await.map(|r| r.text());
        s.events.send(format!("{} {answer:?}", thread()));
    })
    .unwrap();
}

#[tokio::test]
async fn a_client_made_on_the_serving_runtime_works_from_a_task_on_own_threads() {
    let elsewhere = Elsewhere::new(Place::OwnThreads, AfterRuntime::builder(), "aft-io");
    let (events, mut rx) = Events::new();
    let state = Pinging {
        client: Client::new(Version::Http1),
        ping: Arc::default(),
        events,
    };
    let app = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/", get(pings))
        .with_state(state.clone());
    let server = elsewhere.serve(app).await;
    state.ping.set(server.url("/ping")).unwrap();
    // The client's pooled connection is made here, on the serving runtime; the
    // task on the own threads reuses it: tokio I/O stays driven by the runtime
    // that registered it.
    let first = within(state.client.get(&server.url("/ping")))
        .await
        .unwrap();
    assert_eq!(first.text(), "pong");
    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "aft-io Ok(\"pong\")");
    server.stop().await.unwrap();
}

/// The threads of this process named `name`, by their `/proc` directory.
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .map(|task| task.path())
        .filter(|task| {
            std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// A thread's scheduling policy (0 normal, 5 `SCHED_IDLE`) and nice value, from its
/// `/proc/.../stat`, whose fields are counted after the parenthesised name.
#[cfg(target_os = "linux")]
fn scheduling(stat: &str) -> (u32, i32) {
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // `fields[0]` is field 3 (state); nice is field 19, policy field 41.
    (
        fields[41 - 3].parse().unwrap(),
        fields[19 - 3].parse().unwrap(),
    )
}

/// Waits until `n` threads are named `name`: a thread names itself once it runs.
#[cfg(target_os = "linux")]
fn until_threads_named(name: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while threads_named(name).len() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} threads named {name} never came"
        );
        std::thread::yield_now();
    }
}

#[cfg(target_os = "linux")]
fn scheduling_of(task: &std::path::Path) -> (u32, i32) {
    scheduling(&std::fs::read_to_string(task.join("stat")).unwrap())
}

#[cfg(target_os = "linux")]
async fn reports_its_scheduling(State(events): State<Events>) {
    after(async move {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        events.send(format!("{:?}", scheduling(&stat)));
    })
    .unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn own_threads_run_below_the_request_paths_priority() {
    use after_runtime::ThreadPriority;

    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let serving = scheduling_of(std::path::Path::new("/proc/thread-self"));
    let cases = [
        (ThreadPriority::Idle, "aft-idle", (SCHED_IDLE, serving.1)),
        (ThreadPriority::Nice(10), "aft-nice", (SCHED_OTHER, 10)),
        (ThreadPriority::Inherit, "aft-inherit", serving),
    ];
    for (priority, name, want) in cases {
        let runtime = AfterRuntime::builder()
            .dedicated_threads(2)
            .thread_priority(priority)
            .thread_name(name)
            .build();
        let (events, mut rx) = Events::new();
        let app = Router::new()
            .route("/", get(reports_its_scheduling))
            .with_state(events);
        let server = serve(&runtime, app).await;
        within(Client::new(Version::Http1).get(&server.url("/")))
            .await
            .unwrap();

        // The task ran at that priority, and so does every one of the threads.
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            format!("{want:?}"),
            "{priority:?}"
        );
        until_threads_named(name, 2);
        for thread in threads_named(name) {
            assert_eq!(scheduling_of(&thread), want, "{priority:?}");
        }
        // The request path's threads keep theirs.
        let this = scheduling_of(std::path::Path::new("/proc/thread-self"));
        assert_eq!(this, serving, "{priority:?}");
        server.stop().await.unwrap();
        runtime.shutdown(Duration::from_secs(5)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn shutdown_joins_the_own_threads() {
    let runtime = AfterRuntime::builder()
        .dedicated_threads(2)
        .thread_name("aft-join")
        .build();
    until_threads_named("aft-join", 2);
    let (events, mut rx) = Events::new();
    let app = Router::new().route("/", get(nests)).with_state(events);
    let server = serve(&runtime, app).await;
    within(Client::new(Version::Http2).get(&server.url("/")))
        .await
        .unwrap();
    crate::next_sorted(&mut rx, 3).await;
    server.stop().await.unwrap();

    // Once `shutdown` returns, the threads have ended: no polling needed.
    let report = within(runtime.shutdown(Duration::from_secs(5))).await;
    assert_eq!(report.stats.succeeded, 3, "{report}");
    assert_eq!(threads_named("aft-join").len(), 0);
    // A second call, and the handle itself, keep working.
    let again = within(runtime.shutdown(Duration::from_secs(5))).await;
    assert_eq!(again.stats, report.stats);
    assert_accounted(&runtime);
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_the_runtime_where_blocking_is_allowed_joins_its_threads() {
    let runtime = AfterRuntime::builder()
        .dedicated_threads(2)
        .thread_name("aft-drop")
        .build();
    let clone = runtime.clone();
    until_threads_named("aft-drop", 2);
    drop(runtime);
    assert_eq!(threads_named("aft-drop").len(), 2, "a handle is left");
    drop(clone);
    assert_eq!(threads_named("aft-drop").len(), 0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_runtime_in_a_task_stops_its_threads() {
    // The last handle goes with a task running on the threads themselves: the
    // runtime cannot wait there for its own threads, nor panic.
    let runtime = AfterRuntime::builder()
        .dedicated_threads(1)
        .thread_name("aft-drop-task")
        .build();
    let (events, mut rx) = Events::new();
    let gate = Gate::new();
    let state = Held {
        gate: gate.clone(),
        events,
    };
    let app = Router::new().route("/", get(held)).with_state(state);
    let server = serve(&runtime, app).await;
    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "started");
    server.stop().await.unwrap();
    drop(runtime); // the running task holds the last handle
    assert_eq!(threads_named("aft-drop-task").len(), 1);

    gate.open();
    assert_eq!(
        within(rx.recv()).await.unwrap(),
        "finished on aft-drop-task"
    );
    within(async {
        while !threads_named("aft-drop-task").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn tasks_for_a_runtime_the_application_stopped_are_counted_as_cancelled() {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime = AfterRuntime::builder()
        .handle(background.handle().clone())
        .build();
    background.shutdown_background();
    let (events, mut rx) = Events::new();
    let app = Router::new().route("/", get(nests)).with_state(events);
    let server = serve(&runtime, app).await;

    let response = within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(response.text(), "ok");
    within(runtime.wait_idle()).await;
    let stats = runtime.stats();
    assert_eq!((stats.registered, stats.cancelled), (1, 1), "{stats:?}");
    assert!(rx.try_recv().is_err(), "the task never ran");
    server.stop().await.unwrap();
}
