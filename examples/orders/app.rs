//! The order service: its routes, its database, and the after work each order
//! registers. `main.rs` serves it; `tests/orders.rs` tests it over loopback.

use after_runtime::{AfterLayer, AfterRuntime, after, outcome, with_after};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::routing::{get, post};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// Any error, for the after task's `?` and the setup code.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `POST /orders` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct NewOrder {
    pub(crate) email: String,
    pub(crate) item: String,
    pub(crate) quantity: i64,
}

/// What `POST /orders` answers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Created {
    pub(crate) id: i64,
}

/// One row of `GET /audit`: written by the after task of the order it is about.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub(crate) order_id: i64,
    /// The client's `User-Agent`.
    pub(crate) user_agent: String,
    /// The `session-id` cookie, if any.
    pub(crate) session: Option<String>,
    /// The status of the order's response, as the after task saw it.
    pub(crate) status: Option<i64>,
    /// What the webhook answered.
    pub(crate) webhook: String,
}

/// Opens (creating if needed) the SQLite database at `url` and applies the schema
/// in `migrations/`.
pub(crate) async fn connect(url: &str) -> Result<SqlitePool, BoxError> {
    let options = url.parse::<SqliteConnectOptions>()?.create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The handlers' state. Cloned into every after task that needs it, so each field
/// is cheap to clone (the pool and the client are handles).
#[derive(Debug, Clone)]
struct Orders {
    db: SqlitePool,
    webhook_url: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

#[with_after]
async fn create_order(
    State(app): State<Orders>,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<Created>), StatusCode> {
    if order.quantity < 1 {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    // The order itself is written before answering: the client is told its id.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (email, item, quantity) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(&order.email)
    .bind(&order.item)
    .bind(order.quantity)
    .fetch_one(&app.db)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;

    // The webhook and the audit row can wait: they run once the response is out,
    // so a slow webhook never slows the client down. `app` and `order` move in;
    // `headers` and `cookies` are the request's.
    after! {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned();
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        let status = outcome().and_then(|o| o.status()).map(|s| i64::from(s.as_u16()));
        // The webhook first: the audit row records what it answered.
        let event = serde_json::json!({ "event": "order.created", "id": id, "email": order.email });
        let request = http::Request::post(&app.webhook_url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&event)?)))?;
        let answer = app.http.request(request).await?.status();
        sqlx::query("INSERT INTO audit (order_id, user_agent, session, status, webhook) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(agent)
            .bind(session)
            .bind(status)
            .bind(answer.as_u16().to_string())
            .execute(&app.db)
            .await?;
        // An `Err` from any `?` above is logged with this block's file:line and
        // counted as failed; the client already has its answer.
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

/// The service's router over `db`, calling `webhook_url` after each order, with its
/// after tasks on `runtime`.
pub(crate) fn app(db: SqlitePool, webhook_url: String, runtime: &AfterRuntime) -> Router {
    let http = Client::builder(TokioExecutor::new()).build_http();
    Router::new()
        .route("/orders", post(create_order))
        .route("/audit", get(list_audit))
        .with_state(Orders {
            db,
            webhook_url,
            http,
        })
        // Last, so it is the outermost layer: it sees the response the client gets.
        .layer(AfterLayer::new(runtime.clone()))
}
