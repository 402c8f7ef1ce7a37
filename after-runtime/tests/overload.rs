//! `OverloadPolicy::ShedOldest` end to end: past `max_pending`, the oldest task
//! waiting for a slot is dropped unrun, counted and logged, and the new one taken.
//! A file of its own: it installs a subscriber, and the interest tracing caches
//! for a log line is shared by every test thread of a binary.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterErrorKind, AfterRuntime, OverloadPolicy, after};
use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

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

/// An event's message, and its target and other fields, by name.
type Logged = (String, Vec<(String, String)>);

/// The error-level events logged while it is installed.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Logged>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String, Vec<(String, String)>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.0 = format!("{value:?}"),
                    name => self.1.push((name.to_owned(), format!("{value:?}"))),
                }
            }
        }
        if *event.metadata().level() == tracing::Level::ERROR {
            let target = ("target".to_owned(), event.metadata().target().to_owned());
            let mut fields = Fields(String::new(), vec![target]);
            event.record(&mut fields);
            self.0.lock().unwrap().push((fields.0, fields.1));
        }
    }
}

/// Registers a task that reports `tag` when it runs; returns the line it was
/// registered on, as its logs name it.
#[track_caller]
fn tagged(
    tag: &'static str,
    ran: &tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> (u32, Result<(), AfterErrorKind>) {
    let line = std::panic::Location::caller().line();
    let ran = ran.clone();
    let registered = after(async move { ran.send(tag).unwrap() }).map_err(|e| e.kind());
    (line, registered)
}

#[tokio::test]
async fn shed_oldest_drops_the_oldest_task_waiting_for_a_slot_for_a_new_one() {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let runtime = AfterRuntime::builder()
        .max_concurrency(1)
        .max_pending(3)
        .overload_policy(OverloadPolicy::ShedOldest)
        .build();
    let gate = Arc::new(Semaphore::new(0));
    let (ran_tx, mut ran) = tokio::sync::mpsc::unbounded_channel();

    // The first request's tasks: one takes the only slot, two wait for it.
    let (g, tx) = (gate.clone(), ran_tx.clone());
    let (lines_tx, lines_rx) = tokio::sync::oneshot::channel();
    request(&runtime, move || async move {
        after(async move { g.acquire().await.unwrap().forget() }).unwrap();
        let first = tagged("first", &tx);
        let second = tagged("second", &tx);
        assert_eq!((first.1, second.1), (Ok(()), Ok(())));
        lines_tx.send([first.0, second.0]).unwrap();
    })
    .await;
    let shed_lines = lines_rx.await.unwrap();
    let s = runtime.stats();
    assert_eq!((s.running, s.pending), (1, 2), "{s:?}");

    // The second request's response is open. Its first task fits; each next one
    // takes the place of the oldest task waiting for a slot, until none waits for a
    // slot (its own wait for its response).
    let tx = ran_tx.clone();
    let (results_tx, results) = tokio::sync::oneshot::channel();
    request(&runtime, move || async move {
        let taken = ["third", "fourth", "fifth"].map(|tag| tagged(tag, &tx).1);
        let refused = tagged("sixth", &tx).1;
        results_tx.send((taken, refused)).unwrap();
    })
    .await;
    let (taken, refused) = results.await.unwrap();
    assert_eq!(taken, [Ok(()), Ok(()), Ok(())]);
    assert_eq!(
        refused,
        Err(AfterErrorKind::Overloaded),
        "nothing waits for a slot"
    );
    let s = runtime.stats();
    assert_eq!(
        (s.registered, s.rejected, s.running, s.pending),
        (7, 3, 1, 3),
        "{s:?}"
    );

    gate.add_permits(1);
    let report = runtime.shutdown(Duration::from_secs(30)).await;
    assert_eq!((report.stats.succeeded, report.stats.rejected), (4, 3));
    drop(ran_tx);
    let mut order = Vec::new();
    while let Some(tag) = ran.recv().await {
        order.push(tag);
    }
    assert_eq!(
        order,
        ["third", "fourth", "fifth"],
        "the shed tasks never ran"
    );

    let events = events.0.lock().unwrap();
    let shed: Vec<_> = events
        .iter()
        .filter(|(message, _)| message.contains("ShedOldest"))
        .collect();
    assert_eq!(shed.len(), 2, "{events:?}");
    for ((message, fields), line) in shed.iter().zip(shed_lines) {
        assert!(message.starts_with("after task rejected"), "{message}");
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        // Where the task events have always been logged from.
        assert_eq!(field("target"), Some("after_runtime::executor"));
        assert_eq!(field("method"), Some("GET"));
        assert_eq!(field("path"), Some("\"/\""));
        let location = field("location").unwrap();
        assert!(
            location.starts_with(&format!("{}:{line}:", file!())),
            "{location}"
        );
    }
}
