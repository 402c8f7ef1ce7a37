//! Shutdown waits for pending and nested tasks and for requests that arrive while it
//! drains, takes any grace, survives hostile drops, and answers every caller; the
//! counts add up.

use std::time::Duration;

use std::convert::Infallible;

use after_runtime::{AfterLayer, AfterRuntime, after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use futures_util::poll;
use http_body_util::Full;
use tokio::sync::mpsc;

use crate::{Events, Gate, assert_accounted, with_layer};

#[derive(Clone)]
struct Gates {
    outer: Gate,
    inner: Gate,
    events: Events,
}

#[with_after]
async fn two_stage(State(g): State<Gates>) -> &'static str {
    after! {
        g.outer.wait().await;
        let inner = g.inner.clone();
        let events = g.events.clone();
        after! {
            inner.wait().await;
            events.send("nested finished");
        }
        g.events.send("outer finished");
    }
    "ok"
}

/// Serves one request to `two_stage` over `version` and stops the server: its task
/// is left waiting at the outer gate.
async fn serve_one_two_stage_request(
    version: Version,
) -> (AfterRuntime, Gates, mpsc::UnboundedReceiver<String>) {
    let (events, rx) = Events::new();
    let gates = Gates {
        outer: Gate::new(),
        inner: Gate::new(),
        events,
    };
    let app = Router::new()
        .route("/", get(two_stage))
        .with_state(gates.clone());
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();
    within(Client::new(version).get(&server.url("/")))
        .await
        .unwrap();
    server.stop().await.unwrap();
    (runtime, gates, rx)
}

#[tokio::test]
async fn shutdown_waits_for_pending_and_nested_tasks() {
    let (runtime, gates, mut rx) = serve_one_two_stage_request(Version::Http2).await;

    let shutdown = runtime.shutdown(Duration::from_secs(60));
    tokio::pin!(shutdown);
    assert!(
        poll!(&mut shutdown).is_pending(),
        "the outer task is still waiting"
    );

    gates.outer.open();
    assert_eq!(within(rx.recv()).await.unwrap(), "outer finished");
    // The nested task was registered during the drain and is still held.
    assert!(
        poll!(&mut shutdown).is_pending(),
        "the nested task is still waiting"
    );
    assert_accounted(&runtime);

    gates.inner.open();
    let report = within(shutdown).await;
    assert_eq!(within(rx.recv()).await.unwrap(), "nested finished");
    let s = report.stats;
    assert_eq!(
        (s.registered, s.succeeded, s.pending, s.running),
        (2, 2, 0, 0),
        "{s:?}"
    );
    assert!(report.unfinished.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_at_the_deadline_and_reports_where() {
    let (runtime, _gates, _rx) = serve_one_two_stage_request(Version::Http1).await;

    // The gate never opens: the paused clock jumps to the deadline.
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    let s = report.stats;
    assert_eq!((s.registered, s.cancelled, s.running), (1, 1, 0), "{s:?}");
    assert_eq!(report.unfinished.len(), 1);
    let task = &report.unfinished[0];
    assert_eq!(task.location.file(), "tests/loopback/shutdown.rs");
    assert_eq!((task.method.as_str(), task.path.as_str()), ("GET", "/"));
    assert!(
        report
            .to_string()
            .contains("cancelled: GET /, tests/loopback/shutdown.rs:"),
        "{report}"
    );
}

#[tokio::test]
async fn shutdown_with_no_deadline_waits_for_every_task() {
    let (runtime, gates, mut rx) = serve_one_two_stage_request(Version::Http1).await;

    let shutdown = runtime.shutdown(Duration::MAX);
    tokio::pin!(shutdown);
    assert!(poll!(&mut shutdown).is_pending());
    gates.outer.open();
    assert_eq!(within(rx.recv()).await.unwrap(), "outer finished");
    gates.inner.open();
    let report = within(shutdown).await;
    assert_eq!(within(rx.recv()).await.unwrap(), "nested finished");
    assert_eq!((report.stats.succeeded, report.stats.cancelled), (2, 0));
}

/// A value whose `Drop` panics, captured by a task that never runs.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("a captured value panicked in its Drop");
    }
}

async fn one_running_one_queued() -> &'static str {
    after(std::future::pending::<()>()).unwrap(); // runs until cancelled
    let captured = PanicsWhenDropped;
    after(async move {
        let _captured = &captured;
    })
    .unwrap(); // waits for the only slot
    "ok"
}

#[tokio::test(start_paused = true)]
async fn a_queued_task_whose_capture_panics_on_drop_does_not_stop_shutdown() {
    let runtime = AfterRuntime::builder()
        .max_concurrency(1)
        .no_task_timeout()
        .build();
    let app = Router::new()
        .route("/", get(one_running_one_queued))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await.unwrap();
    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    server.stop().await.unwrap();
    assert_eq!((runtime.stats().running, runtime.stats().pending), (1, 1));

    let report = runtime.shutdown(Duration::from_secs(1)).await;
    let s = report.stats;
    assert_eq!(
        (s.registered, s.cancelled, s.pending, s.running),
        (2, 2, 0, 0),
        "both cancelled, none left behind: {s:?}"
    );
    assert_eq!(report.unfinished.len(), 2);
}

/// A response whose body never ends: its request stays in flight.
async fn endless() -> Body {
    after(async {}).unwrap();
    let chunks = futures_util::stream::unfold((), |()| async {
        std::future::pending::<()>().await;
        None::<(Result<Bytes, Infallible>, ())>
    });
    Body::from_stream(chunks)
}

async fn forever() -> &'static str {
    after(std::future::pending::<()>()).unwrap();
    "ok"
}

#[tokio::test(start_paused = true)]
async fn concurrent_shutdowns_share_the_earliest_deadline_and_a_repeat_returns_at_once() {
    let runtime = AfterRuntime::builder().no_task_timeout().build();
    let app = Router::new()
        .route("/forever", get(forever))
        .route("/endless", get(endless))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await.unwrap();
    let client = Client::new(Version::Http1);
    within(client.get(&server.url("/forever"))).await.unwrap();
    // Read the head only: the body streams on, its request in flight.
    let request = http::Request::get(server.url("/endless"))
        .body(Full::default())
        .unwrap();
    let streaming = within(client.send(request)).await.unwrap();

    let start = tokio::time::Instant::now();
    let (long, short) = tokio::join!(runtime.shutdown(Duration::from_secs(60)), async {
        tokio::task::yield_now().await; // the long one starts draining first
        runtime.shutdown(Duration::from_millis(50)).await
    },);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "both returned at the earliest deadline"
    );
    assert_eq!(long, short, "every caller gets the final report");
    let s = long.stats;
    assert_eq!(
        (s.registered, s.cancelled, s.running, s.pending),
        (2, 2, 0, 0)
    );

    // The response still streams, yet the runtime is shut down: a repeat returns
    // at once with the same report.
    let again = runtime.shutdown(Duration::from_secs(60)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(again, long);
    drop(streaming);
    drop(server);
}

#[derive(Clone)]
struct Window {
    first: Gate,
    late: Gate,
    events: Events,
}

#[with_after]
async fn first(State(w): State<Window>) -> &'static str {
    after! {
        w.first.wait().await;
        w.events.send("first task done");
    }
    "ok"
}

#[with_after]
async fn late(State(w): State<Window>) -> &'static str {
    w.events.send("late request in flight");
    w.late.wait().await;
    after! { w.events.send("late task ran"); }
    "ok"
}

#[tokio::test]
async fn a_request_arriving_while_the_drain_waits_for_a_task_is_drained_too() {
    let (events, mut rx) = Events::new();
    let window = Window {
        first: Gate::new(),
        late: Gate::new(),
        events,
    };
    let app = Router::new()
        .route("/first", get(first))
        .route("/late", get(late))
        .with_state(window.clone());
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();
    let client = Client::new(Version::Http2);
    within(client.get(&server.url("/first"))).await.unwrap();

    // No request in flight: the drain is waiting for the first task.
    let shutdown = runtime.shutdown(Duration::from_secs(60));
    tokio::pin!(shutdown);
    assert!(poll!(&mut shutdown).is_pending());

    // A request arrives in that window, and the task ends while it is in flight.
    let late_url = server.url("/late");
    let late_client = client.clone();
    let late_response = tokio::spawn(async move { late_client.get(&late_url).await });
    assert_eq!(within(rx.recv()).await.unwrap(), "late request in flight");
    window.first.open();
    assert_eq!(within(rx.recv()).await.unwrap(), "first task done");
    within(async {
        while runtime.stats().running > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        poll!(&mut shutdown).is_pending(),
        "the drain re-checks: a request is still in flight"
    );

    window.late.open();
    within(late_response).await.unwrap().unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "late task ran");
    let report = within(shutdown).await;
    let s = report.stats;
    assert_eq!(
        (s.registered, s.succeeded, s.cancelled, s.rejected),
        (2, 2, 0, 0)
    );
    server.stop().await.unwrap();
}
