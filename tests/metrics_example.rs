//! `examples/metrics.rs` as a user runs it: the example's own binary, started as a
//! child process with `PORT=0`, its address read from what it prints, then scraped
//! over loopback after one `GET /`, and stopped with SIGTERM.
//!
//! The binary is the one `cargo test` builds (it builds every example before it runs
//! any test) next to this test's own: `target/<profile>/examples/metrics`. A test
//! run with `--test metrics_example` alone does not build it, so the test says so
//! instead of testing a stale or missing binary. Unix only: the example is stopped
//! with SIGTERM.

#![cfg(unix)]

use std::path::PathBuf;
use std::process::Stdio;

use after_workspace::{Client, Version, within};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The example's binary, checked to be newer than its source.
fn example_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/metrics_example-<hash> → target/<profile>/examples/metrics
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("metrics{}", std::env::consts::EXE_SUFFIX));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/metrics.rs");
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let how = "`cargo test` builds it; with `--test metrics_example` alone, run \
               `cargo build --example metrics` first";
    let built =
        modified(&binary).unwrap_or_else(|| panic!("{} is missing: {how}", binary.display()));
    assert!(
        built >= modified(&source).expect("examples/metrics.rs"),
        "{} is older than examples/metrics.rs: {how}",
        binary.display()
    );
    binary
}

/// The example's process; killed if the test fails before it has stopped it.
struct Example {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Example {
    fn start() -> Self {
        let mut child = Command::new(example_binary())
            .env("PORT", "0")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start examples/metrics");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Example { child, stdout }
    }

    /// The next line the example prints.
    async fn line(&mut self) -> String {
        within(self.stdout.next_line())
            .await
            .expect("read the example's stdout")
            .expect("the example printed nothing more before it exited")
    }
}

/// Scrapes `/metrics`.
async fn scrape(client: &Client, base: &str) -> String {
    let response = within(client.get(&format!("{base}/metrics")))
        .await
        .expect("GET /metrics");
    assert_eq!(response.head.status, 200);
    response.text()
}

/// The value of the sample named exactly `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn one_request_shows_in_every_after_metric() {
    let mut example = Example::start();
    let first = example.line().await;
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("expected the address first, got {first:?}"));
    let base = format!("http://{addr}");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let client = Client::new(Version::Http1);
    let before = scrape(&client, &base).await;
    let registered = sample(&before, "after_tasks_registered_total");
    assert_eq!(registered.unwrap_or(0.0), 0.0, "{before}");

    let response = within(client.get(&format!("{base}/"))).await.unwrap();
    assert_eq!(response.head.status, 200);

    // Registered in the handler, so counted before the response was sent.
    let text = scrape(&client, &base).await;
    assert_eq!(
        sample(&text, "after_tasks_registered_total"),
        Some(1.0),
        "{text}"
    );

    // The task ends some time after the response; scrape until it has (the guard
    // fails the test if it never does).
    let text = within(async {
        loop {
            let text = scrape(&client, &base).await;
            if sample(&text, r#"after_tasks_ended_total{end="succeeded"}"#).is_some() {
                return text;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    for (series, value) in [
        ("after_tasks_registered_total", 1.0),
        (r#"after_tasks_ended_total{end="succeeded"}"#, 1.0),
        ("after_tasks_pending", 0.0),
        ("after_tasks_running", 0.0),
        (r#"after_task_duration_seconds_count{end="succeeded"}"#, 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    for kind in [
        "# TYPE after_tasks_registered_total counter",
        "# TYPE after_tasks_ended_total counter",
        "# TYPE after_tasks_pending gauge",
        "# TYPE after_tasks_running gauge",
        "# TYPE after_task_duration_seconds histogram",
    ] {
        assert!(text.contains(kind), "{kind} in\n{text}");
    }
    assert!(
        text.contains(r#"after_task_duration_seconds_bucket{end="succeeded",le="+Inf"} 1"#),
        "{text}"
    );

    // SIGTERM: the example stops serving, drains, reports and exits cleanly.
    drop(client);
    stop(&mut example.child);
    let report = example.line().await;
    assert!(
        report.starts_with("drained: 1 registered: 1 succeeded"),
        "{report}"
    );
    let status = within(example.child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}

/// Sends SIGTERM, the signal orchestrators stop a service with.
fn stop(child: &mut Child) {
    let pid = child.id().expect("the example is still running");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
}
