//! Nothing lost, under fire: 10,000 requests over loopback whose tasks randomly succeed, fail,
//! panic, time out or hang, against a small runtime (8 running, 100 waiting), with a
//! shutdown in the middle of the flood. Afterwards every registered task is in
//! exactly one terminal count, and the counts match what the test tallied itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use after_runtime::{AfterErrorKind, AfterLayer, AfterRuntime, after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;

const REQUESTS: u64 = 10_000;
const CLIENTS: u64 = 16;
const SHUTDOWN_AFTER: u64 = REQUESTS / 2;
const PANIC_MESSAGE: &str = "injected fault";

/// What the test saw, independently of the runtime's counts.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    rejected_overload: AtomicU64,
    rejected_shutdown: AtomicU64,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    /// Started, then dropped before their end: timed out, or cancelled while running.
    dropped_unfinished: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

/// Lives inside a task's future: knows whether the task started and how it ended.
struct Probe {
    tally: Arc<Tally>,
    ended: bool,
}

impl Probe {
    fn start(tally: Arc<Tally>) -> Self {
        bump(&tally.started);
        Probe {
            tally,
            ended: false,
        }
    }

    fn end(&mut self, counter: fn(&Tally) -> &AtomicU64) {
        self.ended = true;
        bump(counter(&self.tally));
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.ended {
            bump(&self.tally.dropped_unfinished);
        }
    }
}

#[derive(serde::Deserialize)]
struct Fault {
    kind: u8,
}

async fn handler(State(tally): State<Arc<Tally>>, Query(fault): Query<Fault>) -> &'static str {
    bump(&tally.calls);
    let t = tally.clone();
    let registered = after(async move {
        let mut probe = Probe::start(t);
        match fault.kind {
            0 | 1 => {
                probe.end(|t| &t.succeeded);
                Ok(())
            }
            2 => {
                probe.end(|t| &t.failed);
                Err("injected error")
            }
            3 => {
                probe.end(|t| &t.panicked);
                panic!("{PANIC_MESSAGE}");
            }
            4 => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!("past the task timeout")
            }
            _ => std::future::pending().await,
        }
    });
    match registered.map_err(|e| e.kind()) {
        Ok(()) => {}
        Err(AfterErrorKind::Overloaded) => bump(&tally.rejected_overload),
        Err(AfterErrorKind::ShutDown) => bump(&tally.rejected_shutdown),
        Err(other) => panic!("unexpected {other:?}"),
    }
    "ok"
}

/// A small xorshift generator: the same faults on every run of a given seed.
fn kinds(seed: u64) -> impl Iterator<Item = u8> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some((x % 6) as u8)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_of_a_faulty_flood_is_accounted_for() {
    // Injected panics are expected: keep them out of the test output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m == PANIC_MESSAGE);
        if !injected {
            default_hook(info);
        }
    }));

    let runtime = AfterRuntime::builder()
        .max_concurrency(8)
        .max_pending(100)
        .task_timeout(Duration::from_millis(100))
        .build();
    let tally = Arc::new(Tally::default());
    let app = Router::new()
        .route("/", get(handler))
        .with_state(tally.clone())
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await.unwrap();

    let done = Arc::new(AtomicU64::new(0));
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
    let mut shutdown_tx = Some(shutdown_tx);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let url = server.url("/");
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let client = Client::new(if c % 2 == 0 {
                Version::Http1
            } else {
                Version::Http2
            });
            let mut fired = false;
            for kind in kinds(c + 1).take((REQUESTS / CLIENTS) as usize) {
                let response = client.get(&format!("{url}?kind={kind}")).await.unwrap();
                assert_eq!(response.head.status, 200);
                fired |= done.fetch_add(1, Ordering::SeqCst) + 1 == SHUTDOWN_AFTER;
            }
            fired
        }));
    }
    // Shut down in the middle of the flood, with a grace shorter than the timeout so
    // some tasks are cancelled at the deadline.
    let drain = {
        let runtime = runtime.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < SHUTDOWN_AFTER {
                tokio::task::yield_now().await;
            }
            let report = runtime.shutdown(Duration::from_millis(20)).await;
            let _ = shutdown_tx.take().map(|tx| tx.send(()));
            report
        })
    };
    let mut fired = 0;
    for client in clients {
        fired += u64::from(within(client).await.unwrap());
    }
    assert_eq!(fired, 1, "exactly one request crossed the halfway mark");
    let report = within(drain).await.unwrap();
    within(shutdown_rx).await.unwrap();
    server.stop().await.unwrap();

    let s = runtime.stats();
    let t = |c: &AtomicU64| c.load(Ordering::SeqCst);
    println!("runtime: {s:?}");
    println!(
        "test tally: calls {}, rejected {} + {}, started {}, ok {}, err {}, panic {}, dropped {}",
        t(&tally.calls),
        t(&tally.rejected_overload),
        t(&tally.rejected_shutdown),
        t(&tally.started),
        t(&tally.succeeded),
        t(&tally.failed),
        t(&tally.panicked),
        t(&tally.dropped_unfinished)
    );

    // Every task reached exactly one end.
    assert_eq!((s.pending, s.running), (0, 0), "{s:?}");
    assert_eq!(s.settled(), s.registered);
    // And the ends match what the test saw.
    let admitted = t(&tally.calls) - t(&tally.rejected_overload) - t(&tally.rejected_shutdown);
    let never_started = admitted - t(&tally.started);
    assert_eq!(s.registered, REQUESTS);
    assert_eq!(s.registered, t(&tally.calls));
    assert_eq!(
        s.rejected,
        t(&tally.rejected_overload) + t(&tally.rejected_shutdown)
    );
    assert_eq!(s.succeeded, t(&tally.succeeded));
    assert_eq!(s.failed, t(&tally.failed));
    assert_eq!(s.panicked, t(&tally.panicked));
    assert_eq!(
        s.timed_out + s.cancelled,
        t(&tally.dropped_unfinished) + never_started
    );
    assert!(
        s.cancelled >= never_started,
        "a task that never started can only be cancelled"
    );
    // The flood really exercised every path.
    for (name, count) in [
        ("succeeded", s.succeeded),
        ("failed", s.failed),
        ("panicked", s.panicked),
        ("timed out", s.timed_out),
        ("rejected for overload", t(&tally.rejected_overload)),
        ("rejected after shutdown", t(&tally.rejected_shutdown)),
        ("cancelled", s.cancelled),
    ] {
        assert!(count > 0, "no task {name}: {s:?}");
    }
    assert_eq!(report.stats.cancelled as usize, report.unfinished.len());
}
