//! Nothing lost, shutdown and bounds at the level of the runtime: concurrency and pending bounds, the overload
//! policy, timeouts, and shutdown with late registrations. These are about the
//! runtime, not the network, so one request through the service is enough; the
//! loopback tests live in the workspace's `tests/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterErrorKind, AfterRuntime, after};
use futures_util::poll;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{ServiceExt, service_fn};

/// Sends one request whose handler runs `handler`, and reads the response to its end.
async fn request<F, Fut>(runtime: &AfterRuntime, handler: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut handler = Some(handler);
    let service = After::new(
        service_fn(move |_: Request<()>| {
            let handler = handler.take().expect("one request");
            async move {
                handler().await;
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }
        }),
        runtime.clone(),
    );
    let response = service.oneshot(Request::new(())).await.unwrap();
    drop(response); // the body is whole: its tasks are released
}

fn assert_accounted(runtime: &AfterRuntime) {
    let s = runtime.stats();
    assert_eq!(s.settled() + s.pending + s.running, s.registered, "{s:?}");
}

#[tokio::test]
async fn running_tasks_never_exceed_max_concurrency() {
    let runtime = AfterRuntime::builder().max_concurrency(4).build();
    let gate = Arc::new(Semaphore::new(0));
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (g, n, p) = (gate.clone(), now.clone(), peak.clone());
    request(&runtime, move || async move {
        for _ in 0..50 {
            let (g, n, p, e) = (g.clone(), n.clone(), p.clone(), entered_tx.clone());
            after(async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(running, Ordering::SeqCst);
                e.send(()).unwrap();
                g.acquire().await.unwrap().forget();
                n.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    })
    .await;

    for _ in 0..4 {
        entered.recv().await.unwrap();
    }
    // Four tasks are inside, holding their slots; the rest wait their turn.
    let s = runtime.stats();
    assert_eq!((s.running, s.pending), (4, 46), "{s:?}");
    assert!(entered.try_recv().is_err());
    gate.add_permits(50);
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    assert_eq!(report.stats.succeeded, 50);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "the bound was reached and never passed"
    );
}

#[tokio::test]
async fn pending_never_exceeds_max_pending_and_overflow_is_rejected_and_counted() {
    let runtime = AfterRuntime::builder()
        .max_concurrency(1)
        .max_pending(10)
        .build();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    request(&runtime, move || async move {
        let results: Vec<_> = (0..20)
            .map(|_| {
                let g = g.clone();
                after(async move { g.acquire().await.unwrap().forget() }).map_err(|e| e.kind())
            })
            .collect();
        tx.send(results).unwrap();
    })
    .await;
    let results = rx.await.unwrap();
    assert!(results[..10].iter().all(Result::is_ok));
    assert!(
        results[10..]
            .iter()
            .all(|r| *r == Err(AfterErrorKind::Overloaded))
    );
    let s = runtime.stats();
    assert_eq!(
        (s.registered, s.rejected, s.running, s.pending),
        (20, 10, 1, 9),
        "{s:?}"
    );

    // One place is free again once a task runs: one more fits, the next does not.
    let g = gate.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    request(&runtime, move || async move {
        let first = after(async move { g.acquire().await.unwrap().forget() }).is_ok();
        let second = after(async {}).map_err(|e| e.kind());
        tx.send((first, second)).unwrap();
    })
    .await;
    assert_eq!(rx.await.unwrap(), (true, Err(AfterErrorKind::Overloaded)));
    assert!(runtime.stats().pending <= 10);
    assert_accounted(&runtime);

    gate.add_permits(11);
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    let s = report.stats;
    assert_eq!(
        (s.registered, s.succeeded, s.rejected),
        (22, 11, 11),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_timeout_is_cancelled_and_counted() {
    let runtime = AfterRuntime::builder()
        .task_timeout(Duration::from_secs(5))
        .build();
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    request(&runtime, move || async move {
        let slow = f.clone();
        after(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            slow.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        after(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    })
    .await;
    let report = runtime.shutdown(Duration::from_secs(60)).await;
    let s = report.stats;
    assert_eq!((s.timed_out, s.succeeded, s.cancelled), (1, 1, 0), "{s:?}");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the slow task never finished"
    );
}

#[tokio::test]
async fn shutdown_waits_for_requests_still_in_flight_and_their_late_registrations() {
    let runtime = AfterRuntime::builder().build();
    let handler_gate = Arc::new(Semaphore::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (at_gate_tx, at_gate) = tokio::sync::oneshot::channel();
    let in_flight = {
        let runtime = runtime.clone();
        let gate = handler_gate.clone();
        tokio::spawn(async move {
            request(&runtime, move || async move {
                at_gate_tx.send(()).unwrap();
                gate.acquire().await.unwrap().forget();
                // Registered while the runtime drains.
                let registered = after(async move { tx.send("late task ran").unwrap() });
                assert!(registered.is_ok());
            })
            .await;
        })
    };
    at_gate.await.unwrap(); // the request is in flight and has registered nothing yet

    let shutdown = runtime.shutdown(Duration::from_secs(30));
    tokio::pin!(shutdown);
    assert!(poll!(&mut shutdown).is_pending());
    handler_gate.add_permits(1);
    assert_eq!(rx.await.unwrap(), "late task ran");
    let report = shutdown.await;
    assert_eq!((report.stats.registered, report.stats.succeeded), (1, 1));
    in_flight.await.unwrap();
}

#[tokio::test]
async fn registration_after_shutdown_is_an_error_and_counted() {
    let runtime = AfterRuntime::builder().build();
    runtime.shutdown(Duration::from_secs(1)).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    request(&runtime, move || async move {
        tx.send(after(async {}).map_err(|e| e.kind())).unwrap();
    })
    .await;
    assert_eq!(rx.await.unwrap(), Err(AfterErrorKind::ShutDown));
    let s = runtime.stats();
    assert_eq!((s.registered, s.rejected), (1, 1), "{s:?}");
    // A second shutdown returns the final report at once.
    let again = runtime.shutdown(Duration::from_secs(1)).await;
    assert_eq!(again.stats, s);
}

/// A task that is always ready, as one draining a busy channel or socket is, uses up
/// tokio's cooperative budget on every poll. Its timeout and the shutdown deadline
/// must still be seen. (Real time: paused time only advances when the runtime idles,
/// and this task never lets it.)
async fn always_ready() {
    loop {
        tokio::task::consume_budget().await;
    }
}

#[tokio::test]
async fn a_task_that_spends_its_whole_budget_on_every_poll_still_times_out() {
    let runtime = AfterRuntime::builder()
        .task_timeout(Duration::from_millis(50))
        .build();
    request(&runtime, || async {
        after(always_ready()).unwrap();
    })
    .await;
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    let s = report.stats;
    assert_eq!((s.timed_out, s.cancelled, s.running), (1, 0, 0), "{s:?}");
}

#[tokio::test]
async fn a_task_that_spends_its_whole_budget_on_every_poll_is_cancelled_at_the_deadline() {
    // The default timeout (60 s) is armed, but the shutdown deadline comes first.
    let runtime = AfterRuntime::builder().build();
    request(&runtime, || async {
        after(always_ready()).unwrap();
    })
    .await;
    let report = runtime.shutdown(Duration::from_millis(50)).await;
    let s = report.stats;
    assert_eq!((s.cancelled, s.timed_out, s.running), (1, 0, 0), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_waiting_and_running_tasks_are_cancelled_and_listed() {
    let runtime = AfterRuntime::builder()
        .max_concurrency(1)
        .no_task_timeout()
        .build();
    request(&runtime, || async {
        after(std::future::pending::<()>()).unwrap(); // runs, never ends
        after(async {}).unwrap(); // waits behind it
    })
    .await;
    let report = runtime.shutdown(Duration::from_secs(10)).await;
    let s = report.stats;
    assert_eq!(
        (s.registered, s.cancelled, s.pending, s.running),
        (2, 2, 0, 0),
        "{s:?}"
    );
    assert_eq!(report.unfinished.len(), 2);
    for task in &report.unfinished {
        assert_eq!(task.location.file(), file!());
    }
    let text = report.to_string();
    assert!(text.contains(&format!(", {}:", file!())), "{text}");
}

#[test]
fn tasks_dropped_with_their_tokio_runtime_are_still_counted() {
    let runtime = AfterRuntime::builder()
        .max_concurrency(1)
        .max_pending_per_request(1_000)
        .build();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        request(&runtime, || async {
            for _ in 0..1_000 {
                after(std::future::pending::<()>()).unwrap();
            }
        })
        .await;
        tokio::task::yield_now().await; // the first task is running
    });
    // Dropping the tokio runtime drops the running task; each queued one is then
    // spawned onto the dying runtime and dropped unpolled, one after another.
    drop(tokio);
    let s = runtime.stats();
    assert_eq!(
        (s.registered, s.cancelled, s.pending, s.running),
        (1_000, 1_000, 0, 0),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_tasks_of_unfinished_responses_are_cancelled_and_listed() {
    let runtime = AfterRuntime::builder().build();
    let service = After::new(
        service_fn(|_: Request<()>| async {
            after(async {}).unwrap();
            after(async {}).unwrap();
            Ok::<_, Infallible>(Response::new(String::from("a body nobody reads")))
        }),
        runtime.clone(),
    );
    // The response is out but its body is never read: its tasks keep waiting.
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(runtime.stats().pending, 2);

    let report = runtime.shutdown(Duration::from_secs(5)).await;
    let s = report.stats;
    assert_eq!((s.registered, s.cancelled, s.pending), (2, 2, 0), "{s:?}");
    assert_eq!(report.unfinished.len(), 2);
    assert!(
        report
            .unfinished
            .iter()
            .all(|t| t.location.file() == file!())
    );

    // The body ending later starts nothing and counts nothing twice.
    drop(response);
    assert_eq!(runtime.stats(), s);
}

#[tokio::test]
async fn a_requests_tasks_are_handed_over_in_registration_order() {
    // One slot: the order they start in is the order they were handed over in.
    let runtime = AfterRuntime::builder().max_concurrency(1).build();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = order.clone();
    request(&runtime, move || async move {
        for i in 0..20 {
            let o = o.clone();
            after(async move { o.lock().unwrap().push(i) }).unwrap();
        }
    })
    .await;
    runtime.shutdown(Duration::from_secs(10)).await;
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_body_wrapper_forwards_size_hint_and_end_of_stream() {
    use http_body::Body;
    use http_body_util::BodyExt;

    let runtime = AfterRuntime::builder().build();
    let service = After::new(
        service_fn(|_: Request<()>| async {
            after(async {}).unwrap();
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"12345"),
            )))
        }),
        runtime.clone(),
    );
    let mut body = service.oneshot(Request::new(())).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "12345");
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));
    // The last frame released the task, before the body was dropped.
    assert_eq!(runtime.stats().pending, 0);
}

/// A panic payload whose own `Drop` panics too.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("the payload's drop panicked");
    }
}

#[tokio::test]
async fn a_task_whose_panic_payload_panics_on_drop_is_counted_as_panicked() {
    let runtime = AfterRuntime::builder().build();
    request(&runtime, || async {
        after(async { std::panic::panic_any(PanicsWhenDropped) }).unwrap();
    })
    .await;
    let s = runtime.shutdown(Duration::from_secs(10)).await.stats;
    assert_eq!((s.panicked, s.cancelled), (1, 0), "{s:?}");
    assert_accounted(&runtime);
}

#[test]
fn tasks_released_outside_any_runtime_run_on_the_one_that_served_the_request() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runtime = AfterRuntime::builder().build();
    let (ran, task_ran) = std::sync::mpsc::channel();
    let service = After::new(
        service_fn(move |_: Request<()>| {
            let ran = ran.clone();
            async move {
                after(async move { ran.send(()).unwrap() }).unwrap();
                Ok::<_, Infallible>(Response::new(String::from("unread")))
            }
        }),
        runtime.clone(),
    );
    let response = tokio.block_on(service.oneshot(Request::new(()))).unwrap();
    // Dropped on this thread, where no runtime is current: the response is finished
    // (aborted), and its task starts on the runtime that served it.
    drop(response);
    task_ran
        .recv_timeout(Duration::from_secs(10))
        .expect("the task never ran");
    let report = tokio.block_on(runtime.shutdown(Duration::from_secs(10)));
    assert_eq!(
        (report.stats.succeeded, report.stats.cancelled),
        (1, 0),
        "{report}"
    );
}
