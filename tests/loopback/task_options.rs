//! Per-task options over TCP: a named task's name is in its log line, the
//! `task` label of the duration metric, `task_stats()` and the shutdown report, and
//! its own timeout wins over the runtime's; `after!` options and `after_with` alike.

use std::time::Duration;

use after_runtime::{TaskKey, TaskOptions, after, after_with, with_after};
use after_workspace::{CapturedLogs, Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::{Events, assert_accounted, with_layer};

#[with_after]
async fn signup(State(events): State<Events>) -> &'static str {
    // The runtime's timeout is a minute; this task's is 20 ms.
    after!(
        name = "welcome-mail",
        timeout = Duration::from_millis(20),
        {
            events.send("mail started");
            std::future::pending::<()>().await;
        }
    );
    // Named, without a timeout of its own: cut off by the shutdown.
    let export = TaskOptions::new().name("audit-export");
    after_with(export, std::future::pending::<()>()).unwrap();
    // Unnamed: counted by where it is.
    after(async {}).unwrap();
    "welcome"
}

#[test]
fn a_named_task_shows_its_name_in_logs_metrics_stats_and_the_report() {
    // One thread, so the captured subscriber and the local recorder see the tasks.
    let (logs, _guard) = CapturedLogs::install();
    #[cfg(feature = "metrics")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    #[cfg(feature = "metrics")]
    let prometheus = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let serve = || {
        runtime.block_on(async {
            let (events, mut rx) = Events::new();
            let (app, after_runtime) = with_layer(
                Router::new()
                    .route("/signup", get(signup))
                    .with_state(events),
            );
            let server = TestServer::start(app).await.unwrap();
            let response = within(Client::new(Version::Http1).get(&server.url("/signup")))
                .await
                .unwrap();
            assert_eq!(response.text(), "welcome");
            assert_eq!(within(rx.recv()).await.unwrap(), "mail started");

            // The mail times out on its own 20 ms; the export still runs.
            let mail = loop {
                let stats = after_runtime.task_stats();
                let mail = stats
                    .iter()
                    .find(|t| t.task == TaskKey::Name("welcome-mail"));
                if let Some(mail) = mail.filter(|m| m.timed_out == 1) {
                    break *mail;
                }
                within(tokio::time::sleep(Duration::from_millis(5))).await;
            };
            assert_eq!((mail.registered, mail.in_flight()), (1, 0), "{mail}");

            server.stop().await.unwrap();
            let report = after_runtime.shutdown(Duration::from_millis(50)).await;
            assert_accounted(&after_runtime);
            (report, after_runtime.task_stats())
        })
    };
    #[cfg(feature = "metrics")]
    let (report, groups) = metrics::with_local_recorder(&recorder, serve);
    #[cfg(not(feature = "metrics"))]
    let (report, groups) = serve();

    // The report names the cut-off task and its request.
    assert_eq!(report.unfinished.len(), 1, "{report}");
    let export = &report.unfinished[0];
    assert_eq!(export.name, Some("audit-export"));
    assert!(
        report
            .to_string()
            .contains("cancelled: audit-export, GET /signup, "),
        "{report}"
    );

    // Per group: two names first, then the unnamed task by its location.
    let keys: Vec<String> = groups.iter().map(|g| g.task.to_string()).collect();
    assert_eq!(keys[..2], ["audit-export", "welcome-mail"], "{keys:?}");
    assert!(keys[2].starts_with(file!()), "{keys:?}");
    let ends: Vec<_> = groups
        .iter()
        .map(|g| (g.succeeded, g.timed_out, g.cancelled))
        .collect();
    assert_eq!(ends, [(0, 0, 1), (0, 1, 0), (1, 0, 0)]);

    // The log line of the timeout carries the name.
    let timed_out = logs.lines_with("after task timed out");
    assert_eq!(timed_out.len(), 1, "{}", logs.contents());
    assert!(
        timed_out[0].contains("task=\"welcome-mail\""),
        "{}",
        timed_out[0]
    );
    assert!(timed_out[0].contains("timeout=20ms"), "{}", timed_out[0]);
    let cancelled = logs.lines_with("after task cancelled");
    assert!(
        cancelled
            .iter()
            .any(|l| l.contains("task=\"audit-export\"")),
        "{}",
        logs.contents()
    );

    // And so does the duration metric's label.
    #[cfg(feature = "metrics")]
    {
        let text = prometheus.render();
        let mail = text
            .lines()
            .find(|l| {
                l.starts_with("after_task_duration_seconds_count")
                    && l.contains("task=\"welcome-mail\"")
            })
            .unwrap_or_else(|| panic!("no welcome-mail series in:\n{text}"));
        assert!(mail.contains("end=\"timed_out\""), "{mail}");
        assert!(mail.ends_with(" 1"), "{mail}");
    }
}
