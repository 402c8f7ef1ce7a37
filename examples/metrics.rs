//! The runtime's counts as Prometheus metrics: `GET /` registers after work and
//! `GET /metrics` answers in the Prometheus text format.
//!
//! ```text
//! cargo run --example metrics            # PORT=0 picks a free port
//! curl -s localhost:3000/
//! curl -s localhost:3000/metrics
//! ```
//!
//! It needs after-runtime's `metrics` feature, which publishes every count through
//! the `metrics` facade to whichever recorder the application installs (here
//! `metrics-exporter-prometheus`). In your own `Cargo.toml`:
//!
//! ```toml
//! after-runtime = { version = "0.1", features = ["metrics"] }
//! metrics-exporter-prometheus = { version = "0.18", default-features = false }
//! ```
//!
//! (This workspace turns the feature on by default.) Ctrl-C or SIGTERM stops the
//! server and drains pending after work.

use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, after, with_after};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

#[with_after]
async fn index() -> &'static str {
    after! {
        // Stands in for real work (an email, a webhook), so the duration
        // histogram has something to show.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    "hello: after work registered; see /metrics\n"
}

async fn metrics(State(prometheus): State<PrometheusHandle>) -> String {
    prometheus.render()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder the runtime publishes to. Its default features would also start
    // an HTTP listener of its own; here the `/metrics` route renders it instead.
    let prometheus = PrometheusBuilder::new()
        // Buckets make `after_task_duration_seconds` a Prometheus histogram, which
        // aggregates across instances (without them it is a summary).
        .set_buckets(&[0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0])?
        .install_recorder()?;
    // Each scrape folds the durations recorded since the last one into the
    // histogram; this does it between scrapes too, so they never pile up.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .with_state(prometheus)
        .layer(AfterLayer::new(runtime.clone()));

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let report = runtime.shutdown(Duration::from_secs(20)).await;
    println!("drained: {report}");
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM (what orchestrators send before they kill a
/// process).
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("install the Ctrl-C handler");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
