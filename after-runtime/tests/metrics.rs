//! The `metrics` feature publishes every count through the `metrics` facade.
#![cfg(feature = "metrics")]

use std::convert::Infallible;
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterRuntime, TaskOptions, after, after_with};
use http::{Request, Response};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{ServiceExt, service_fn};

#[tokio::test]
async fn counters_gauges_and_histograms_move() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder in this binary");

    let runtime = AfterRuntime::builder().max_pending(2).build();
    let service = After::new(
        service_fn(|_: Request<()>| async {
            after(async {}).unwrap();
            let audit = TaskOptions::new().name("audit");
            after_with(audit, async { Err::<(), _>("failed on purpose") }).unwrap();
            assert!(after(async {}).is_err(), "past max_pending");
            Ok::<_, Infallible>(Response::new(String::new()))
        }),
        runtime.clone(),
    );
    drop(service.oneshot(Request::new(())).await.unwrap());
    runtime.shutdown(Duration::from_secs(10)).await;

    let mut seen = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        seen.insert(name, value);
    }
    let get = |name: &str| {
        seen.get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name} missing from {seen:#?}"))
    };
    assert_eq!(get("after_tasks_registered_total{}"), 3.0);
    assert_eq!(get("after_tasks_ended_total{end=succeeded}"), 1.0);
    assert_eq!(get("after_tasks_ended_total{end=failed}"), 1.0);
    assert_eq!(get("after_tasks_ended_total{end=rejected}"), 1.0);
    assert_eq!(get("after_tasks_pending{}"), 0.0);
    assert_eq!(get("after_tasks_running{}"), 0.0);
    // Named tasks carry their name; unnamed ones no `task` label.
    assert_eq!(get("after_task_duration_seconds{end=succeeded}"), 1.0);
    assert_eq!(
        get("after_task_duration_seconds{end=failed,task=audit}"),
        1.0
    );
}

/// Counts one thing by registering an after task, once: a recorder may run any code.
#[derive(Default)]
struct RegistersOnce(std::sync::atomic::AtomicBool);

impl metrics::CounterFn for RegistersOnce {
    fn increment(&self, _: u64) {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            after(async {}).expect("inside the request's scope");
        }
    }

    fn absolute(&self, _: u64) {}
}

/// A recorder whose registration counter registers an after task.
#[derive(Default)]
struct Reentrant(std::sync::Arc<RegistersOnce>);

impl metrics::Recorder for Reentrant {
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
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn counts_are_published_outside_the_request_scopes_lock() {
    // On its own thread: before the fix it deadlocked, and a test must fail, not hang.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let recorder = Reentrant::default();
        metrics::with_local_recorder(&recorder, || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let stats = tokio.block_on(async {
                let runtime = AfterRuntime::builder().build();
                let service = After::new(
                    service_fn(|_: Request<()>| async {
                        after(async {}).unwrap();
                        Ok::<_, Infallible>(Response::new(String::new()))
                    }),
                    runtime.clone(),
                );
                drop(service.oneshot(Request::new(())).await.unwrap());
                runtime.shutdown(Duration::from_secs(10)).await.stats
            });
            done.send(stats).unwrap();
        });
    });
    let stats = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a recorder registering an after task deadlocked the registration");
    // The handler's task and the one the recorder registered.
    assert_eq!(stats.registered, 2, "{stats:?}");
    assert_eq!(stats.succeeded, 2, "{stats:?}");
}
