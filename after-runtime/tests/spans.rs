//! Each task runs in an `after_task` span that follows from its request's span, so a
//! request id set by `TraceLayer` (or any span around the service) links to the task.
//! A named task's span carries its name in the field `task`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use after_runtime::layer::After;
use after_runtime::{AfterRuntime, TaskOptions, after, after_with};
use http::{Request, Response};
use tower::{Service, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Default)]
struct Spans {
    /// Span id → name and the `request_id` or `location` field.
    names: Arc<Mutex<HashMap<u64, String>>>,
    /// (follower, followed).
    follows: Arc<Mutex<Vec<(u64, u64)>>>,
}

struct Label<'a>(&'a mut String);

impl Visit for Label<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "request_id" | "path" | "task") {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut label = attrs.metadata().name().to_owned();
        attrs.record(&mut Label(&mut label));
        self.names.lock().unwrap().insert(id.into_u64(), label);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, _: Context<'_, S>) {
        self.follows
            .lock()
            .unwrap()
            .push((span.into_u64(), follows.into_u64()));
    }
}

#[tokio::test]
async fn each_task_span_follows_from_its_request_span() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let runtime = AfterRuntime::builder().build();
    let mut service = After::new(
        service_fn(|request: Request<()>| async move {
            let path = request.uri().path().to_owned();
            let task = async move { tracing::info!(path, "task ran") };
            if request.uri().path() == "/r2" {
                after_with(TaskOptions::new().name("export"), task).unwrap();
            } else {
                after(task).unwrap();
            }
            Ok::<_, Infallible>(Response::new(String::new()))
        }),
        runtime.clone(),
    );
    for request_id in [1, 2] {
        let span = tracing::info_span!("request", request_id);
        let request = Request::get(format!("/r{request_id}")).body(()).unwrap();
        let service = service.ready().await.unwrap();
        let future = span.in_scope(|| service.call(request));
        drop(future.instrument(span).await.unwrap());
    }
    runtime.shutdown(Duration::from_secs(10)).await;

    let names = spans.names.lock().unwrap();
    let mut links: Vec<String> = spans
        .follows
        .lock()
        .unwrap()
        .iter()
        .map(|(task, request)| format!("{} -> {}", names[task], names[request]))
        .collect();
    links.sort();
    assert_eq!(
        links,
        [
            "after_task path=\"/r1\" -> request request_id=1",
            "after_task path=\"/r2\" task=\"export\" -> request request_id=2",
        ]
    );
}
