//! After tasks under OpenTelemetry (`tracing-opentelemetry`), over loopback: each
//! task's `after_task` span starts a trace of its own, with no parent, and carries a
//! link to the span context of its own request's span (`TraceLayer`'s, outside
//! `AfterLayer`), as `examples/otel.rs` shows.
//!
//! Spans are exported in memory, into a channel the test reads as each span ends:
//! no waiting on how long the spans take to close.

use std::collections::HashMap;
use std::future::Future;

use after_runtime::{AfterLayer, AfterRuntime, after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use opentelemetry::trace::{SpanContext, SpanId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::sync::mpsc;
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;

/// An exporter that sends every span it is given to the test.
#[derive(Debug)]
struct Channel(mpsc::UnboundedSender<SpanData>);

impl SpanExporter for Channel {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        for span in batch {
            let _ = self.0.send(span);
        }
        std::future::ready(Ok(()))
    }
}

/// One task through `after!`, one through `after()` from a helper.
#[with_after]
async fn checkout(Path(id): Path<String>) -> String {
    after!(clone(id) {
        tracing::info!(%id, "receipt sent");
    });
    notify(&id);
    format!("order {id} paid")
}

fn notify(id: &str) {
    let id = id.to_owned();
    after(async move { tracing::info!(id, "webhook called") }).unwrap();
}

/// The string value of attribute `key`.
fn attribute(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_else(|| panic!("no attribute {key} on {span:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_task_spans_link_to_their_request_span() {
    let (spans_tx, mut spans) = mpsc::unbounded_channel();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(Channel(spans_tx))
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route("/checkout/{id}", get(checkout))
        .layer(AfterLayer::new(runtime.clone()))
        .layer(TraceLayer::new_for_http());
    let server = TestServer::start(app).await.unwrap();
    for version in Version::BOTH {
        let client = Client::new(version);
        for id in [1, 2] {
            let url = server.url(&format!("/checkout/{id}-{version:?}"));
            let response = within(client.get(&url)).await.unwrap();
            assert_eq!(response.head.status, 200);
        }
    }

    // Four requests, each with a request span and two after_task spans.
    let mut requests: HashMap<String, SpanData> = HashMap::new();
    let mut tasks: Vec<SpanData> = Vec::new();
    while requests.len() < 4 || tasks.len() < 8 {
        let span = within(spans.recv()).await.expect("the exporter is alive");
        match &*span.name {
            // TraceLayer's span records the request's URI: a path over HTTP/1.1,
            // an absolute URI over HTTP/2.
            "request" => {
                let uri: http::Uri = attribute(&span, "uri").parse().unwrap();
                requests.insert(uri.path().to_owned(), span);
            }
            "after_task" => tasks.push(span),
            // h2's own spans, for one.
            _ => {}
        }
    }

    for task in &tasks {
        let path = attribute(task, "path");
        let request = &requests[&path].span_context;
        assert_eq!(task.parent_span_id, SpanId::INVALID, "{path}: no parent");
        assert_ne!(
            task.span_context.trace_id(),
            request.trace_id(),
            "{path}: a trace of its own, so the request's trace ends with its response"
        );
        let links: Vec<&SpanContext> = task.links.iter().map(|l| &l.span_context).collect();
        assert_eq!(links, [request], "{path}: linked to its own request's span");
        assert!(
            attribute(task, "location").starts_with("tests/otel.rs:"),
            "{task:#?}"
        );
    }
    // Each request's span is linked from both of its tasks: `after!` and `after()`.
    for (path, request) in &requests {
        let linked = tasks
            .iter()
            .filter(|task| {
                task.links
                    .iter()
                    .any(|l| l.span_context == request.span_context)
            })
            .count();
        assert_eq!(linked, 2, "{path}");
    }

    server.stop().await.unwrap();
    let report = runtime.shutdown(std::time::Duration::from_secs(10)).await;
    assert_eq!(report.stats.succeeded, 8, "{report}");
    provider.shutdown().unwrap();
}
