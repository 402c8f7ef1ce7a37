//! `AfterRuntime::wait_idle`: it waits for the response a test still holds, for
//! the last running task and for tasks nested in it, and leaves the runtime taking
//! work.

use std::convert::Infallible;
use std::time::Duration;

use after_runtime::layer::{After, AfterBody};
use after_runtime::{AfterRuntime, after};
use futures_util::poll;
use http::{Request, Response};
use tokio::sync::{mpsc, oneshot};
use tower::{ServiceExt, service_fn};

/// Serves one request whose handler registers `tasks`, and returns the response
/// unread: its tasks wait for it.
async fn respond<F>(runtime: &AfterRuntime, tasks: F) -> Response<AfterBody<String>>
where
    F: FnOnce() + Send + 'static,
{
    let mut tasks = Some(tasks);
    let service = After::new(
        service_fn(move |_: Request<()>| {
            let tasks = tasks.take().expect("one request");
            async move {
                tasks();
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }
        }),
        runtime.clone(),
    );
    service.oneshot(Request::new(())).await.unwrap()
}

/// Fails the test instead of hanging it if `wait_idle` never returns.
async fn idle(runtime: &AfterRuntime) {
    tokio::time::timeout(Duration::from_secs(10), runtime.wait_idle())
        .await
        .expect("wait_idle returns once nothing is pending or running");
}

#[tokio::test]
async fn returns_at_once_when_nothing_was_registered() {
    let runtime = AfterRuntime::builder().build();
    let wait = runtime.wait_idle();
    tokio::pin!(wait);
    assert!(poll!(wait).is_ready());
}

#[tokio::test]
async fn waits_for_the_held_response_and_the_last_task_then_takes_more_work() {
    let runtime = AfterRuntime::builder().build();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (finish, finished) = oneshot::channel::<()>();
    let response = respond(&runtime, move || {
        let quick = started_tx.clone();
        after(async move {
            quick.send("quick").unwrap();
        })
        .unwrap();
        after(async move {
            started_tx.send("slow").unwrap();
            finished.await.unwrap();
        })
        .unwrap();
    })
    .await;

    let wait = runtime.wait_idle();
    tokio::pin!(wait);
    assert!(poll!(wait.as_mut()).is_pending(), "the response is held");
    assert_eq!(runtime.stats().pending, 2);

    drop(response);
    let mut seen = vec![started.recv().await.unwrap(), started.recv().await.unwrap()];
    seen.sort();
    assert_eq!(seen, ["quick", "slow"]);
    assert!(poll!(wait.as_mut()).is_pending(), "the slow task runs");

    finish.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("returns after the last task");
    let s = runtime.stats();
    assert_eq!((s.succeeded, s.pending, s.running), (2, 0, 0), "{s:?}");

    // The runtime still takes work, and a second wait sees it through.
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    drop(
        respond(&runtime, move || {
            after(async move { ran_tx.send(()).unwrap() }).unwrap();
        })
        .await,
    );
    idle(&runtime).await;
    assert!(
        ran.try_recv().is_ok(),
        "the later task ran before wait_idle returned"
    );
    assert_eq!(runtime.stats().succeeded, 3);
}

#[tokio::test]
async fn waits_for_tasks_nested_in_running_ones() {
    let runtime = AfterRuntime::builder().build();
    let (go, gate) = oneshot::channel::<()>();
    let (nested_tx, mut nested) = mpsc::unbounded_channel();
    drop(
        respond(&runtime, move || {
            after(async move {
                gate.await.unwrap();
                // Registered as the outer task ends: nothing is idle in between.
                after(async move { nested_tx.send(()).unwrap() }).unwrap();
            })
            .unwrap();
        })
        .await,
    );
    let wait = runtime.wait_idle();
    tokio::pin!(wait);
    assert!(poll!(wait.as_mut()).is_pending());
    go.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("returns after the nested task");
    assert!(nested.try_recv().is_ok(), "the nested task ran first");
    assert_eq!(runtime.stats().succeeded, 2);
}

#[tokio::test]
async fn concurrent_waiters_all_return() {
    let runtime = AfterRuntime::builder().build();
    let (go, gate) = oneshot::channel::<()>();
    drop(
        respond(&runtime, move || {
            after(async move { gate.await.unwrap() }).unwrap();
        })
        .await,
    );
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let runtime = runtime.clone();
            tokio::spawn(async move { idle(&runtime).await })
        })
        .collect();
    go.send(()).unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(runtime.stats().succeeded, 1);
}
