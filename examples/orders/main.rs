//! A small order service on SQLite: `POST /orders` answers at once; an `after!`
//! block then calls a webhook and writes an audit row; `GET /audit` lists the rows.
//! The service is in `app.rs`; this file configures it, serves it and drains it.
//!
//! ```text
//! cargo run --example orders
//! curl -s localhost:3000/orders -H 'content-type: application/json' \
//!      -H 'cookie: session-id=s-1' -d '{"email":"ada@example.com","item":"tea","quantity":2}'
//! curl -s localhost:3000/audit
//! ```
//!
//! `PORT` (default 3000) picks the port; `DATABASE_URL` (default a file in the
//! temporary directory, `sqlite://…/after-orders.db`) picks the SQLite database.
//! Ctrl-C or SIGTERM stops the server and drains pending after work.

mod app;

use std::time::Duration;

use after_runtime::AfterRuntime;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;

use crate::app::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Failed after tasks are logged at error level, with their block's file:line.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join("after-orders.db");
        format!("sqlite://{}", path.display())
    });
    let db = app::connect(&database_url).await?;

    // Something for the webhook to call: a receiver on a port of its own that
    // prints each event.
    let hooks = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_url = format!("http://{}/webhook", hooks.local_addr()?);
    let receiver = Router::new().route(
        "/webhook",
        post(|body: Bytes| async move {
            println!("webhook received {}", String::from_utf8_lossy(&body));
            StatusCode::NO_CONTENT
        }),
    );
    tokio::spawn(async move { axum::serve(hooks, receiver).await });

    let runtime = AfterRuntime::builder().max_concurrency(32).build();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "orders listening on http://{} (database {database_url})",
        listener.local_addr()?
    );

    // Stop taking requests on SIGTERM or Ctrl-C and finish the ones in flight;
    // then give their after work up to 20 s (keep it inside the grace period your
    // orchestrator allows before it kills the process).
    axum::serve(listener, app::app(db, webhook_url, &runtime))
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
