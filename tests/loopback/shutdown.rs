//! S8/S9: shutdown waits for pending and nested tasks, and the counts add up.

use std::time::Duration;

use after_runtime::{AfterRuntime, after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures_util::poll;
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
    assert!(report.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_at_the_deadline_and_reports_where() {
    let (runtime, _gates, _rx) = serve_one_two_stage_request(Version::Http1).await;

    // The gate never opens: the paused clock jumps to the deadline.
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    let s = report.stats;
    assert_eq!((s.registered, s.cancelled, s.running), (1, 1, 0), "{s:?}");
    assert_eq!(report.cancelled.len(), 1);
    assert_eq!(report.cancelled[0].file(), "tests/loopback/shutdown.rs");
    assert!(
        report
            .to_string()
            .contains("cancelled: tests/loopback/shutdown.rs:"),
        "{report}"
    );
}
