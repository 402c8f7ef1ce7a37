//! What the macro's forms do at run time: one task per loop iteration with that
//! iteration's values, capture lists, `?` with boxed errors (also in blocks without
//! a final `Ok(())`), spawned blocks.

use after_runtime::{after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;

use crate::{Events, assert_accounted, next_sorted, with_layer};

#[with_after]
async fn per_item(State(events): State<Events>, Path(n): Path<u32>) -> String {
    for i in 0..n {
        let label = format!("item {i} of {n}");
        after!(clone(events) {
            events.send(label);
        });
    }
    // `events` is still ours: the capture list cloned it into each task.
    events.send("handler done");
    format!("{n} registered")
}

fn io_failure() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("disk full"))
}

#[with_after]
async fn fallible(State(events): State<Events>) -> &'static str {
    after!(clone(events) {
        events.send("before the failure");
        io_failure()?;
        events.send("never reached");
        Ok(())
    });
    let spawned = tokio::spawn(async move {
        // An `async move` block owns its own context: it may outlive the handler.
        after! { events.send("registered from a spawned task"); }
    });
    spawned.await.unwrap();
    "ok"
}

#[with_after]
async fn parse_then_audit(State(events): State<Events>, Path(input): Path<String>) -> &'static str {
    // The natural block: `?` and no final `Ok(())`.
    after!(clone(events) {
        let n: u32 = input.parse()?;
        events.send(format!("audited {n}"));
    });
    "ok"
}

#[with_after]
async fn from_a_scoped_thread(State(events): State<Events>) -> &'static str {
    // A closure that borrows the handler's context and runs on another thread, where
    // the layer's task-local scope is not set.
    std::thread::scope(|s| {
        s.spawn(|| {
            after!(clone(events) {
                events.send("registered from a scoped thread");
            });
        });
    });
    "ok"
}

#[tokio::test]
async fn a_loop_registers_one_task_per_iteration_with_its_values() {
    let (events, mut rx) = Events::new();
    let app = Router::new()
        .route("/items/{n}", get(per_item))
        .route("/fallible", get(fallible))
        .route("/scoped-thread", get(from_a_scoped_thread))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();

    let response = within(Client::new(Version::Http1).get(&server.url("/items/3")))
        .await
        .unwrap();
    assert_eq!(response.text(), "3 registered");
    assert_eq!(within(rx.recv()).await.unwrap(), "handler done");
    let seen = next_sorted(&mut rx, 3).await;
    assert_eq!(seen, ["item 0 of 3", "item 1 of 3", "item 2 of 3"]);

    within(Client::new(Version::Http2).get(&server.url("/fallible")))
        .await
        .unwrap();
    let seen = next_sorted(&mut rx, 2).await;
    assert_eq!(
        seen,
        ["before the failure", "registered from a spawned task"]
    );
    within(Client::new(Version::Http1).get(&server.url("/scoped-thread")))
        .await
        .unwrap();
    assert_eq!(
        within(rx.recv()).await.unwrap(),
        "registered from a scoped thread"
    );
    server.stop().await.unwrap();
    let report = runtime.shutdown(std::time::Duration::from_secs(10)).await;
    let s = report.stats;
    assert_eq!((s.registered, s.succeeded, s.failed), (6, 5, 1), "{s:?}");
    assert_accounted(&runtime);
}

#[tokio::test]
async fn a_question_mark_block_without_a_final_ok_fails_on_err_and_succeeds_on_ok() {
    let (events, mut rx) = Events::new();
    let app = Router::new()
        .route("/audit/{input}", get(parse_then_audit))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();

    let client = Client::new(Version::Http1);
    within(client.get(&server.url("/audit/7"))).await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "audited 7");
    within(client.get(&server.url("/audit/seven")))
        .await
        .unwrap();
    server.stop().await.unwrap();
    let report = runtime.shutdown(std::time::Duration::from_secs(10)).await;
    let s = report.stats;
    assert_eq!((s.registered, s.succeeded, s.failed), (2, 1, 1), "{s:?}");
    assert!(
        rx.try_recv().is_err(),
        "the failed block stopped at its `?`"
    );
    assert_accounted(&runtime);
}
