//! Orders whose receipt job survives a crash: `POST /orders` writes the order and a
//! receipt job in one SQLite transaction; the job runs once the response is
//! finished, in this process or in a worker-only one (`durable worker`).
//!
//! ```text
//! cargo run --example durable                       # web + workers, temporary database
//! DATABASE_URL=sqlite:orders.db cargo run --example durable
//! DATABASE_URL=sqlite:orders.db AFTER_DURABLE_WORKERS=0 cargo run --example durable   # web only
//! DATABASE_URL=sqlite:orders.db cargo run --example durable -- worker                 # workers only
//! curl -si localhost:3000/orders -H 'content-type: application/json' \
//!      -d '{"email":"a@example.com","item":"tea","quantity":2}'
//! curl -s localhost:3000/jobs
//! ```
//!
//! Environment: `PORT` (default 3000; 0 picks one), `DATABASE_URL` (a SQLite URL; a
//! new temporary file by default), `AFTER_DURABLE_HOLD_SECS` (default 30),
//! `AFTER_DURABLE_WORKERS` (jobs run at once here, default 4; 0 runs none),
//! `AFTER_DURABLE_WORKER_NAME`, `AFTER_DURABLE_HEARTBEAT_SECS` (default 30),
//! `AFTER_DURABLE_POLL_MS` (default 200), `AFTER_DURABLE_GRACE_SECS` (shutdown grace,
//! default 20), `AFTER_DURABLE_JOB_MS` (how long a receipt takes, default 0).
//! For crash drills: `AFTER_DURABLE_ABORT_AFTER_COMMIT=1` aborts the process after the
//! order's commit, before its response; `POST /orders?stream_ms=N` streams the
//! response body over N ms.

use std::convert::Infallible;
use std::time::Duration;

use after_durable::{Durable, Job, JobContext, JobError, JobOptions, Workers, enqueue};
use after_runtime::{AfterLayer, AfterRuntime};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// The receipt for one order. Idempotent: a re-run (after a crash mid-job) writes
/// the same receipt row, which the primary key absorbs.
#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order_id: i64,
    email: String,
    item: String,
    quantity: u32,
}

#[derive(Clone)]
struct ReceiptState {
    pool: SqlitePool,
    work: Duration,
}

impl Job for SendReceipt {
    const NAME: &'static str = "send-receipt";
    type State = ReceiptState;

    async fn run(self, cx: JobContext<ReceiptState>) -> Result<(), JobError> {
        let state = cx.state();
        // Every run is recorded, so that a drill can count them.
        sqlx::query("INSERT INTO job_runs (order_id, pid, attempt) VALUES (?1, ?2, ?3)")
            .bind(self.order_id)
            .bind(i64::from(std::process::id()))
            .bind(i64::from(cx.attempt()))
            .execute(&state.pool)
            .await?;
        tokio::time::sleep(state.work).await;
        sqlx::query("INSERT OR IGNORE INTO receipts (order_id, email, body) VALUES (?1, ?2, ?3)")
            .bind(self.order_id)
            .bind(&self.email)
            .bind(format!("{} x {}", self.quantity, self.item))
            .execute(&state.pool)
            .await?;
        println!("receipt sent: order {} to {}", self.order_id, self.email);
        Ok(())
    }

    fn options(&self) -> JobOptions {
        JobOptions::new().idempotency_key(format!("receipt-{}", self.order_id))
    }
}

#[derive(Deserialize)]
struct NewOrder {
    email: String,
    item: String,
    quantity: u32,
}

#[derive(Deserialize)]
struct Drill {
    stream_ms: Option<u64>,
}

#[derive(Clone)]
struct App {
    durable: Durable,
    abort_after_commit: bool,
}

async fn create_order(
    State(app): State<App>,
    Query(drill): Query<Drill>,
    Json(order): Json<NewOrder>,
) -> Result<Response, (StatusCode, String)> {
    if order.quantity == 0 || order.email.is_empty() {
        tracing::warn!("order rejected: empty email or zero quantity");
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "email and quantity > 0 required".into(),
        ));
    }
    let fail = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "order not written");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "order not written".to_owned(),
        )
    };
    let mut tx = app.durable.pool().begin().await.map_err(|e| fail(&e))?;
    let order_id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (email, item, quantity) VALUES (?1, ?2, ?3) RETURNING id",
    )
    .bind(&order.email)
    .bind(&order.item)
    .bind(order.quantity)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| fail(&e))?;
    let receipt = SendReceipt {
        order_id,
        email: order.email,
        item: order.item,
        quantity: order.quantity,
    };
    let job = enqueue(&mut tx, receipt).await.map_err(|e| fail(&e))?;
    tx.commit().await.map_err(|e| fail(&e))?;
    if app.abort_after_commit {
        eprintln!("aborting after the commit of order {order_id}, before its response");
        std::process::abort();
    }
    let body = serde_json::json!({ "order_id": order_id, "job": format!("{job:?}") }).to_string();
    let body = match drill.stream_ms {
        None => Body::from(body),
        Some(ms) => {
            // The head and a first chunk now, the rest `ms` later.
            let rest = Bytes::from(body);
            let chunks = futures_util::stream::unfold(0, move |step| {
                let rest = rest.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(Bytes::from_static(b" ")), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            Some((Ok(rest), 2))
                        }
                        _ => None,
                    }
                }
            });
            Body::from_stream(chunks)
        }
    };
    Ok((
        StatusCode::CREATED,
        [("content-type", "application/json")],
        body,
    )
        .into_response())
}

async fn list_jobs(State(app): State<App>) -> Result<Response, StatusCode> {
    match app.durable.jobs(10_000).await {
        Ok(jobs) => Ok(Json(jobs).into_response()),
        Err(error) => {
            tracing::error!(%error, "listing jobs failed");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

async fn counts(State(app): State<App>) -> Result<Response, StatusCode> {
    let database = app.durable.status_counts().await.map_err(|error| {
        tracing::error!(%error, "counting jobs failed");
        StatusCode::SERVICE_UNAVAILABLE
    })?;
    Ok(
        Json(serde_json::json!({ "process": app.durable.counts(), "database": database }))
            .into_response(),
    )
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} does not parse")),
        Err(_) => default,
    }
}

async fn shutdown_signal() {
    let terminate = async {
        #[cfg(unix)]
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler")
            .recv()
            .await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

async fn start_workers(
    durable: &Durable,
    pool: &SqlitePool,
) -> Result<Option<Workers>, Box<dyn std::error::Error>> {
    let concurrency: usize = env("AFTER_DURABLE_WORKERS", 4);
    if concurrency == 0 {
        println!("no workers in this process (AFTER_DURABLE_WORKERS=0)");
        return Ok(None);
    }
    let mut workers = durable.workers().concurrency(concurrency);
    if let Ok(name) = std::env::var("AFTER_DURABLE_WORKER_NAME") {
        workers = workers.name(name);
    }
    let state = ReceiptState {
        pool: pool.clone(),
        work: Duration::from_millis(env("AFTER_DURABLE_JOB_MS", 0)),
    };
    let workers = workers.job::<SendReceipt>(state).start().await?;
    println!("workers started: {} x {concurrency}", workers.name());
    Ok(Some(workers))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let worker_only = std::env::args().nth(1).as_deref() == Some("worker");
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        let path = std::env::temp_dir().join(format!("after-durable-{}.db", std::process::id()));
        format!("sqlite:{}", path.display())
    });
    let durable = Durable::builder()
        .hold(Duration::from_secs(env("AFTER_DURABLE_HOLD_SECS", 30)))
        .heartbeat(Duration::from_secs(env("AFTER_DURABLE_HEARTBEAT_SECS", 30)))
        .poll_interval(Duration::from_millis(env("AFTER_DURABLE_POLL_MS", 200)))
        .open(&url)
        .await?;
    let pool = durable.pool().clone();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, email TEXT NOT NULL, \
           item TEXT NOT NULL, quantity INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS receipts (order_id INTEGER PRIMARY KEY, email TEXT NOT NULL, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS job_runs (order_id INTEGER NOT NULL, pid INTEGER NOT NULL, attempt INTEGER NOT NULL);",
    )
    .execute(&pool)
    .await?;
    println!("database {url}");
    let grace = Duration::from_secs(env("AFTER_DURABLE_GRACE_SECS", 20));
    let workers = start_workers(&durable, &pool).await?;

    let runtime = AfterRuntime::builder().build();
    if !worker_only {
        let app = Router::new()
            .route("/orders", post(create_order))
            .route("/jobs", get(list_jobs))
            .route("/counts", get(counts))
            .with_state(App {
                durable: durable.clone(),
                abort_after_commit: std::env::var_os("AFTER_DURABLE_ABORT_AFTER_COMMIT").is_some(),
            })
            .layer(after_durable::DurableLayer::new(durable.clone()))
            .layer(AfterLayer::new(runtime.clone()));
        let port: u16 = env("PORT", 3000);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on http://{}", listener.local_addr()?);
        // 1. Stop taking requests, finish the ones in flight.
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
    } else {
        println!("worker only: no HTTP");
        shutdown_signal().await;
    }
    println!("shutting down");
    // 2. The after tasks, which release the last requests' jobs.
    let report = runtime.shutdown(grace).await;
    if !report.unfinished.is_empty() {
        eprintln!("after tasks cut off: {report}");
    }
    // 3. The workers: running jobs finish, or are put back past the grace.
    if let Some(workers) = workers {
        let report = workers.shutdown(grace).await;
        println!("workers: {report}");
    }
    durable.close(grace).await;
    println!("counts: {}", serde_json::to_string(&durable.counts())?);
    Ok(())
}
