//! The order service behind `examples/orders.rs`: SQLite through sqlx, an audit row
//! and a webhook call after each order's response, and a graceful drain.
//!
//! It lives in the library so the example and its end-to-end test run the same code.

use std::net::SocketAddr;
use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, ShutdownReport, after, outcome, with_after};
use axum::Router;
use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::http::header::USER_AGENT;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::net::TcpListener;

use crate::{BoxError, Client, Version};

/// What `POST /orders` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewOrder {
    /// Who ordered.
    pub email: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: i64,
}

/// What `POST /orders` answers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Created {
    /// The new order's id.
    pub id: i64,
}

/// One row of `GET /audit`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// The order it is about.
    pub order_id: i64,
    /// The client's `User-Agent`.
    pub user_agent: String,
    /// The `session-id` cookie, if any.
    pub session: Option<String>,
    /// The status of the order's response, as the after task saw it.
    pub status: Option<i64>,
    /// What the webhook answered.
    pub webhook: String,
}

/// Opens (creating if needed) the SQLite database at `url` and runs the migrations
/// in `migrations/`.
pub async fn connect(url: &str) -> Result<SqlitePool, BoxError> {
    let options: SqliteConnectOptions =
        url.parse::<SqliteConnectOptions>()?.create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The handlers' state.
#[derive(Debug, Clone)]
struct Orders {
    db: SqlitePool,
    webhook_url: String,
    client: Client,
}

#[with_after]
async fn create_order(
    State(app): State<Orders>,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<Created>), StatusCode> {
    if order.quantity < 1 {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (email, item, quantity) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(&order.email)
    .bind(&order.item)
    .bind(order.quantity)
    .fetch_one(&app.db)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;

    after! {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned();
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        let status = outcome().and_then(|o| o.status()).map(|s| i64::from(s.as_u16()));
        // The webhook first: the audit row records what it answered.
        let payload = serde_json::to_vec(&serde_json::json!({ "event": "order.created", "id": id, "email": order.email }))?;
        let request = http::Request::post(&app.webhook_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))?;
        let answer = app.client.fetch(request).await?;
        sqlx::query("INSERT INTO audit (order_id, user_agent, session, status, webhook) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(agent)
            .bind(session)
            .bind(status)
            .bind(answer.head.status.as_u16().to_string())
            .execute(&app.db)
            .await?;
        Ok(())
    }
    Ok((StatusCode::CREATED, Json(Created { id })))
}

async fn list_audit(State(app): State<Orders>) -> Result<Json<Vec<AuditRow>>, StatusCode> {
    sqlx::query_as("SELECT order_id, user_agent, session, status, webhook FROM audit ORDER BY id")
        .fetch_all(&app.db)
        .await
        .map(Json)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// The service's router, over `db`, calling `webhook_url` after each order.
pub fn app(db: SqlitePool, webhook_url: String, runtime: &AfterRuntime) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/audit", get(list_audit))
        .with_state(Orders {
            db,
            webhook_url,
            client: Client::new(Version::Http1),
        })
        .layer(AfterLayer::new(runtime.clone()))
}

/// The webhook receiver the example serves beside the service: it logs each call and
/// answers `204`.
pub fn webhook_receiver() -> Router {
    Router::new().route(
        "/webhook",
        post(|body: Bytes| async move {
            println!("webhook received {}", String::from_utf8_lossy(&body));
            StatusCode::NO_CONTENT
        }),
    )
}

/// Serves `app` on `listener` until `signal` resolves, then drains `runtime` for at
/// most `grace`: the recipe every service using after tasks should follow.
pub async fn serve_then_drain(
    listener: TcpListener,
    app: Router,
    runtime: &AfterRuntime,
    signal: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<ShutdownReport, BoxError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    Ok(runtime.shutdown(grace).await)
}

/// The address of a listener, for printing.
pub fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}
