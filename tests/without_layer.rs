//! When tasks start without `AfterLayer`: a `#[with_after]` handler's tasks run on the global
//! runtime once the handler's future completes, never before. Its own test binary,
//! so the global runtime's counts are this test's alone.

use std::time::Duration;

use after_runtime::{AfterRuntime, Delivery, after, outcome, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::{Semaphore, mpsc};

#[derive(Clone)]
struct Hooks {
    events: mpsc::UnboundedSender<String>,
    finish_handler: std::sync::Arc<Semaphore>,
}

#[with_after]
async fn handler(State(hooks): State<Hooks>) -> &'static str {
    let events = hooks.events.clone();
    after! {
        let delivery = outcome().map(|o| o.delivery());
        events.send(format!("task ran: {delivery:?}")).unwrap();
    }
    hooks.events.send("registered".into()).unwrap();
    // The handler is still running: its task must wait.
    let _ = hooks.finish_handler.acquire().await.unwrap();
    "done"
}

#[tokio::test]
async fn tasks_run_when_the_handler_finishes() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let finish_handler = std::sync::Arc::new(Semaphore::new(0));
    let app = Router::new().route("/", get(handler)).with_state(Hooks {
        events: tx,
        finish_handler: finish_handler.clone(),
    });
    let server = TestServer::start(app).await.unwrap();

    let url = server.url("/");
    let request = tokio::spawn(async move { Client::new(Version::Http1).get(&url).await.unwrap() });
    assert_eq!(within(rx.recv()).await.unwrap(), "registered");
    let stats = AfterRuntime::global().stats();
    assert_eq!((stats.pending, stats.running, stats.succeeded), (1, 0, 0));

    finish_handler.add_permits(1);
    assert_eq!(within(request).await.unwrap().text(), "done");
    assert_eq!(
        within(rx.recv()).await.unwrap(),
        format!("task ran: {:?}", Some(Delivery::Unobserved))
    );
    server.stop().await.unwrap();
    let report = AfterRuntime::global()
        .shutdown(Duration::from_secs(5))
        .await;
    assert_eq!((report.stats.registered, report.stats.succeeded), (1, 1));
}
