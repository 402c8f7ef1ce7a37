//! Isolation: a task that fails or panics is logged with its request and `file:line`,
//! counted, and harms neither its siblings nor the server.

use std::time::Duration;

use after_runtime::{after, with_after};
use after_workspace::{CapturedLogs, Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::{Events, assert_accounted, with_layer};

/// The line of the `after!` block that follows the comment `marker` in this file.
fn block_line(marker: &str) -> usize {
    let source = include_str!("isolation.rs");
    let comment = source
        .lines()
        .position(|l| l.trim() == marker)
        .expect("marker");
    comment + 2
}

#[with_after]
async fn mixed(State(events): State<Events>) -> &'static str {
    let sibling = events.clone();
    // failing block
    after! {
        Err::<(), String>("the webhook answered 503".to_owned())
    }
    // panicking block
    after! {
        let empty: Vec<u8> = Vec::new();
        let _ = empty[3];
    }
    after! {
        sibling.send("sibling ran");
    }
    "still fine"
}

#[test]
fn failures_and_panics_are_logged_with_file_and_line_and_counted() {
    // One thread, so the captured subscriber sees the server's and the tasks' events.
    let (logs, _guard) = CapturedLogs::install();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (events, mut rx) = Events::new();
        let (app, after_runtime) =
            with_layer(Router::new().route("/", get(mixed)).with_state(events));
        let server = TestServer::start(app).await.unwrap();
        let client = Client::new(Version::Http1);

        let first = within(client.get(&server.url("/"))).await.unwrap();
        assert_eq!(first.text(), "still fine");
        assert_eq!(within(rx.recv()).await.unwrap(), "sibling ran");
        // The server goes on serving.
        let second = within(client.get(&server.url("/"))).await.unwrap();
        assert_eq!(second.text(), "still fine");
        assert_eq!(within(rx.recv()).await.unwrap(), "sibling ran");

        server.stop().await.unwrap();
        let report = after_runtime.shutdown(Duration::from_secs(10)).await;
        let s = report.stats;
        assert_eq!(
            (s.registered, s.succeeded, s.failed, s.panicked),
            (6, 2, 2, 2),
            "{s:?}"
        );
        assert_accounted(&after_runtime);
    });

    let file = file!();
    let failing_line = block_line("// failing block");
    let panicking_line = block_line("// panicking block");
    let failed = logs.lines_with("after task failed");
    assert_eq!(failed.len(), 2, "{}", logs.contents());
    for line in &failed {
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(&format!("location={file}:{failing_line}:")),
            "{line}"
        );
        assert!(
            line.contains("method=GET") && line.contains("path=\"/\""),
            "{line}"
        );
        assert!(line.contains("the webhook answered 503"), "{line}");
    }
    let panicked = logs.lines_with("after task panicked");
    assert_eq!(panicked.len(), 2, "{}", logs.contents());
    for line in &panicked {
        assert!(
            line.contains(&format!("location={file}:{panicking_line}:")),
            "{line}"
        );
        assert!(line.contains("index out of bounds"), "{line}");
    }
}
