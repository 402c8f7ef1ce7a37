//! End-to-end behaviour over real loopback TCP, with real HTTP/1.1 and HTTP/2
//! clients: when tasks start, that they always run, what they see, and how they fail.

mod always_runs;
mod bounds;
mod composition;
mod context;
mod delivery;
mod elsewhere;
mod isolation;
mod macro_behaviour;
mod scope;
mod shutdown;
mod task_options;

use std::sync::{Arc, Mutex};

use after_runtime::{AfterLayer, AfterRuntime};
use axum::Router;
use tokio::sync::mpsc;

/// What tasks and handlers report to the test, in the order it happens.
#[derive(Clone)]
pub(crate) struct Events {
    tx: mpsc::UnboundedSender<String>,
}

impl Events {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Events { tx }, rx)
    }

    pub(crate) fn send(&self, event: impl Into<String>) {
        let _ = self.tx.send(event.into());
    }
}

/// The next `n` events, sorted: for tasks that run concurrently, whose order is theirs.
pub(crate) async fn next_sorted(rx: &mut mpsc::UnboundedReceiver<String>, n: usize) -> Vec<String> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(
            after_workspace::within(rx.recv())
                .await
                .expect("events sender alive"),
        );
    }
    seen.sort();
    seen
}

/// A gate a task waits at until the test opens it.
#[derive(Clone)]
pub(crate) struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    pub(crate) fn new() -> Self {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    pub(crate) async fn wait(&self) {
        self.0.acquire().await.expect("gate closed").forget();
    }

    pub(crate) fn open(&self) {
        self.0.add_permits(1);
    }
}

/// A value a test hands to one handler call.
pub(crate) struct Handoff<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff(self.0.clone())
    }
}

impl<T> Handoff<T> {
    pub(crate) fn new(value: T) -> Self {
        Handoff(Arc::new(Mutex::new(Some(value))))
    }

    pub(crate) fn take(&self) -> T {
        self.0.lock().unwrap().take().expect("handed off twice")
    }
}

/// `app` under a fresh runtime's `AfterLayer`.
pub(crate) fn with_layer(app: Router) -> (Router, AfterRuntime) {
    let runtime = AfterRuntime::builder().build();
    (app.layer(AfterLayer::new(runtime.clone())), runtime)
}

/// Asserts that nothing is lost: every registered task is counted in one state.
pub(crate) fn assert_accounted(runtime: &AfterRuntime) {
    let s = runtime.stats();
    assert_eq!(
        s.settled() + s.pending + s.running,
        s.registered,
        "every registered task is in exactly one state: {s:?}"
    );
}
