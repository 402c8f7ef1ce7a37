//! The `serde` feature: `Stats` round-trips through JSON, and a shutdown report
//! serializes with each unfinished task's request and location.
#![cfg(feature = "serde")]

use std::convert::Infallible;
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterRuntime, Stats, after};
use http::{Method, Request, Response};
use serde_json::json;
use tower::{ServiceExt, service_fn};

#[test]
fn stats_round_trip_through_json_with_their_field_names() {
    let stats = Stats {
        registered: 4,
        running: 1,
        succeeded: 2,
        failed: 1,
        ..Stats::default()
    };
    let value = serde_json::to_value(stats).unwrap();
    assert_eq!(value["registered"], 4);
    assert_eq!(value["timed_out"], 0);
    let back: Stats = serde_json::from_value(value).unwrap();
    assert_eq!(back, stats);
}

#[tokio::test]
async fn a_report_lists_each_unfinished_task_with_its_request() {
    let runtime = AfterRuntime::builder().build();
    let service = After::new(
        service_fn(|_: Request<()>| async {
            after(std::future::pending::<()>()).unwrap();
            Ok::<_, Infallible>(Response::new(String::new()))
        }),
        runtime.clone(),
    );
    let request = Request::builder()
        .method(Method::DELETE)
        .uri("/sessions/7?all=1")
        .body(())
        .unwrap();
    drop(service.oneshot(request).await.unwrap());
    let report = runtime.shutdown(Duration::from_millis(1)).await;

    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["stats"]["cancelled"], 1);
    let task = &value["unfinished"][0];
    assert_eq!(task["method"], "DELETE");
    assert_eq!(task["path"], "/sessions/7");
    assert_eq!(task["location"]["file"], file!());
    assert_eq!(
        task["location"]["line"],
        json!(report.unfinished[0].location.line())
    );
}
