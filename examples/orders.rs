//! A small order service on SQLite: `POST /orders` answers at once; an `after!`
//! block then calls a webhook and writes an audit row; `GET /audit` lists the rows.
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

use std::time::Duration;

use after_runtime::AfterRuntime;
use after_workspace::orders;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), after_workspace::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join("after-orders.db");
        format!("sqlite://{}", path.display())
    });
    let db = orders::connect(&database_url).await?;

    // The webhook receiver, on a port of its own.
    let hooks = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_url = format!("http://{}/webhook", orders::local(&hooks));
    tokio::spawn(async move { axum::serve(hooks, orders::webhook_receiver()).await });

    let runtime = AfterRuntime::builder().max_concurrency(32).build();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "orders listening on http://{} (database {database_url})",
        orders::local(&listener)
    );
    let app = orders::app(db, webhook_url, &runtime);
    let report = orders::serve_then_drain(
        listener,
        app,
        &runtime,
        after_workspace::shutdown_signal(),
        Duration::from_secs(20),
    )
    .await?;
    println!("drained: {report}");
    Ok(())
}
