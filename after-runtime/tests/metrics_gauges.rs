//! The `metrics` feature's gauges never read below zero or above their bound, in any
//! scrape, however registrations and releases on different threads interleave. Its
//! own test binary: it installs the process's global recorder.
#![cfg(feature = "metrics")]

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, after, with_after};
use axum::Router;
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;

const MAX_PENDING: f64 = 16.0;

/// What the recorder saw go wrong, and the gauges' values.
#[derive(Default)]
struct Seen {
    violations: Vec<String>,
    pending: f64,
    running: f64,
}

fn seen() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// No update left a gauge out of bounds, and at rest they read zero, as `stats()`.
fn assert_every_scrape_was_in_bounds() {
    let seen = seen().lock().unwrap();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!((seen.pending, seen.running), (0.0, 0.0), "at rest");
}

/// The registering thread stops in the recorder, between its registration and the
/// publication of its counts, until the test lets it go.
struct Window {
    entered: Mutex<Sender<()>>,
    resume: Mutex<Receiver<()>>,
}

fn window() -> &'static OnceLock<Window> {
    static WINDOW: OnceLock<Window> = OnceLock::new();
    &WINDOW
}

const REGISTERING: &str = "registering";

struct Registered;

impl metrics::CounterFn for Registered {
    fn increment(&self, _: u64) {
        if std::thread::current().name() == Some(REGISTERING) {
            let window = window().get().expect("set by the test");
            window.entered.lock().unwrap().send(()).unwrap();
            window.resume.lock().unwrap().recv().unwrap();
        }
    }

    fn absolute(&self, _: u64) {}
}

/// Applies every update to its gauge and checks it, as a scrape at that moment would.
struct Checked {
    name: &'static str,
    bound: f64,
}

impl Checked {
    fn apply(&self, change: impl FnOnce(&mut f64)) {
        let mut seen = seen().lock().unwrap();
        let value = if self.name == "after_tasks_pending" {
            &mut seen.pending
        } else {
            &mut seen.running
        };
        change(value);
        let value = *value;
        if !(0.0..=self.bound).contains(&value) {
            let violation = format!("{} read {value}", self.name);
            seen.violations.push(violation);
        }
    }
}

impl metrics::GaugeFn for Checked {
    fn increment(&self, by: f64) {
        self.apply(|v| *v += by);
    }

    fn decrement(&self, by: f64) {
        self.apply(|v| *v -= by);
    }

    fn set(&self, to: f64) {
        self.apply(|v| *v = to);
    }
}

struct CheckingRecorder;

impl metrics::Recorder for CheckingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == "after_tasks_registered_total" {
            metrics::Counter::from_arc(Arc::new(Registered))
        } else {
            metrics::Counter::noop()
        }
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let (name, bound) = match key.name() {
            "after_tasks_pending" => ("after_tasks_pending", MAX_PENDING),
            "after_tasks_running" => ("after_tasks_running", 256.0),
            _ => return metrics::Gauge::noop(),
        };
        metrics::Gauge::from_arc(Arc::new(Checked { name, bound }))
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Registers from a thread of its own, which the handler does not wait for: the
/// response can finish, and release the task, while that thread is still
/// registering.
#[with_after]
async fn registers_from_a_thread() -> &'static str {
    std::thread::Builder::new()
        .name(REGISTERING.to_owned())
        .spawn(move || {
            after! {}
        })
        .unwrap();
    "ok"
}

// One test: the recorder and its gauges are the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_published_before_its_registration_never_reads_below_zero() {
    metrics::set_global_recorder(CheckingRecorder).expect("the only recorder in this binary");
    let (entered, in_window) = channel();
    let (resume, resumed) = channel();
    let _ = window().set(Window {
        entered: Mutex::new(entered),
        resume: Mutex::new(resumed),
    });

    let runtime = AfterRuntime::builder()
        .max_pending(MAX_PENDING as usize)
        .build();
    let app: Router = Router::new()
        .route("/", get(registers_from_a_thread))
        .layer(AfterLayer::new(runtime.clone()));
    let response = app
        .oneshot(
            http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // The thread has registered and stands before publishing its counts.
    in_window
        .recv_timeout(Duration::from_secs(20))
        .expect("the thread registers");
    // The response finishes: the task is released and starts.
    response.into_body().collect().await.unwrap();
    resume.send(()).unwrap();

    let report = runtime.shutdown(Duration::from_secs(20)).await;
    assert_eq!((report.stats.registered, report.stats.succeeded), (1, 1));
    assert_every_scrape_was_in_bounds();

    concurrent_registrations_and_releases_keep_every_gauge_in_bounds().await;
}

/// Many requests on both workers, each registering and releasing tasks.
async fn concurrent_registrations_and_releases_keep_every_gauge_in_bounds() {
    let runtime = AfterRuntime::builder()
        .max_pending(MAX_PENDING as usize)
        .build();
    let app: Router = Router::new()
        .route(
            "/",
            get(|| async {
                for _ in 0..4 {
                    let _ = after(async { tokio::task::yield_now().await });
                }
                "ok"
            }),
        )
        .layer(AfterLayer::new(runtime.clone()));
    let requests = (0..200).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let request = http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        })
    });
    for request in requests.collect::<Vec<_>>() {
        request.await.unwrap();
    }
    let report = runtime.shutdown(Duration::from_secs(20)).await;
    let s = report.stats;
    assert_eq!(s.settled(), s.registered, "{s:?}");
    assert_every_scrape_was_in_bounds();
}
