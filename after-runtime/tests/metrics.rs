//! The `metrics` feature publishes every count through the `metrics` facade.
#![cfg(feature = "metrics")]

use std::convert::Infallible;
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterRuntime, after};
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
            after(async { Err::<(), _>("failed on purpose") }).unwrap();
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
    assert_eq!(get("after_task_duration_seconds{end=succeeded}"), 1.0);
    assert_eq!(get("after_task_duration_seconds{end=failed}"), 1.0);
}
