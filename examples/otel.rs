//! OpenTelemetry traces for after work: each after task gets a span of its own,
//! linked to the span of the request that registered it.
//!
//! ```text
//! cargo run --example otel
//! ```
//!
//! A task must not keep its request's span open, or traces would show the request
//! lasting as long as its after work. So each task runs in an `after_task` span
//! with no parent that *follows from* the span current where the request entered
//! `AfterLayer`: here tower-http's `TraceLayer` request span, from outside it.
//! `tracing-opentelemetry` exports that as an OpenTelemetry span link, which trace
//! viewers show as a link from the task's trace to the request's.
//!
//! The example sends one request through the router in process, drains the
//! runtime, and prints the two spans from the SDK's in-memory exporter. A real
//! service would export with `opentelemetry-otlp` and a batch span processor.

use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, after, with_after};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::ServiceExt;
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[with_after]
async fn checkout() -> &'static str {
    after! {
        // Recorded as an event of the task's `after_task` span.
        tracing::info!("receipt sent");
    }
    "paid"
}

/// One line per span: its name, ids, parent and links.
fn describe(span: &SpanData) -> String {
    let context = &span.span_context;
    let mut line = format!(
        "{:<10} trace {} span {}",
        span.name,
        context.trace_id(),
        context.span_id()
    );
    if span.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        line.push_str(", no parent");
    }
    for link in span.links.iter() {
        let linked = &link.span_context;
        line.push_str(&format!(
            ", linked to trace {} span {}",
            linked.trace_id(),
            linked.span_id()
        ));
    }
    line
}

// One thread: once the drain returns, every span it waited for has ended and been
// exported, so the exporter can be read at once.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tracing spans become OpenTelemetry spans, exported as each one ends.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-example")))
        .init();

    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route("/checkout", post(checkout))
        .layer(AfterLayer::new(runtime.clone()))
        // Added last, so it is outside AfterLayer: its request span is current when
        // a request enters AfterLayer, and that is the span after tasks link to.
        .layer(TraceLayer::new_for_http());

    let response = app
        .oneshot(Request::post("/checkout").body(Body::empty())?)
        .await?;
    // Reading the body to its end finishes the response, which starts its tasks.
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    println!(
        "POST /checkout answered {:?}",
        String::from_utf8_lossy(&body)
    );
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    println!("drained: {report}");

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let find = |name: &str| spans.iter().find(|span| span.name == name);
    let (Some(request), Some(task)) = (find("request"), find("after_task")) else {
        return Err(format!("expected a request and an after_task span, got {spans:#?}").into());
    };
    println!("{}", describe(request));
    println!("{}", describe(task));
    // A separate trace, joined to the request's by the link.
    let linked = task
        .links
        .iter()
        .any(|link| link.span_context == request.span_context);
    println!(
        "after_task is {}linked to its request's span",
        if linked { "" } else { "NOT " }
    );
    provider.shutdown()?;
    if !linked {
        return Err("the after_task span has no link to its request's span".into());
    }
    Ok(())
}
