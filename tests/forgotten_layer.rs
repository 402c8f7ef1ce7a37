//! Forgetting `AfterLayer` is loud: the first `#[with_after]` request served without
//! it logs one warning that names the layer and the fix; the tasks still run, on
//! the global runtime. Its own test binary, so the once-per-process warning and the
//! global runtime's counts are this test's alone.

use std::time::Duration;

use after_runtime::{AfterRuntime, after, with_after};
use after_workspace::{CapturedLogs, Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::mpsc;

#[with_after]
async fn handler(State(events): State<mpsc::UnboundedSender<&'static str>>) -> &'static str {
    after! { events.send("task ran").unwrap(); }
    "ok"
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_served_without_the_layer_warns_once_and_names_the_fix() {
    let (logs, _guard) = CapturedLogs::install();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/", get(handler)).with_state(tx);
    let server = TestServer::start(app).await.unwrap();
    let client = Client::new(Version::Http1);
    for _ in 0..2 {
        within(client.get(&server.url("/"))).await.unwrap();
        assert_eq!(within(rx.recv()).await.unwrap(), "task ran");
    }
    server.stop().await.unwrap();

    let warnings = logs.lines_with("WARN");
    assert_eq!(warnings.len(), 1, "once per process: {warnings:#?}");
    for needle in [
        "without AfterLayer",
        "AfterRuntime::global()",
        ".layer(AfterLayer::new(runtime.clone()))",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {}", warnings[0]);
    }
    let report = AfterRuntime::global()
        .shutdown(Duration::from_secs(10))
        .await;
    assert_eq!((report.stats.registered, report.stats.succeeded), (2, 2));
}
