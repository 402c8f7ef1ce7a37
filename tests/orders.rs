//! The order example end to end over loopback: responses arrive before their audit
//! rows exist, and a shutdown in mid-flight still writes every registered row.
//!
//! The service is the example's own code, included from `examples/orders/app.rs`;
//! only the webhook receiver is the test's, so it can hold each call.

#[path = "../examples/orders/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use after_runtime::AfterRuntime;
use after_workspace::{Client, Version, within};
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, COOKIE, USER_AGENT};
use axum::routing::post;
use bytes::Bytes;
use futures_util::poll;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::app::{AuditRow, Created, NewOrder};

/// A webhook receiver the test holds: each call reports itself, then waits for a
/// permit before answering.
fn held_webhook(gate: Arc<Semaphore>, calls: mpsc::UnboundedSender<String>) -> Router {
    Router::new().route(
        "/webhook",
        post(move |body: Bytes| {
            let (gate, calls) = (gate.clone(), calls.clone());
            async move {
                calls
                    .send(String::from_utf8_lossy(&body).into_owned())
                    .unwrap();
                gate.acquire().await.unwrap().forget();
                StatusCode::NO_CONTENT
            }
        }),
    )
}

async fn start(
    app: Router,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (base, stop, server)
}

async fn place(client: &Client, base: &str, n: i64) -> Created {
    let order = NewOrder {
        email: format!("buyer{n}@example.com"),
        item: "tea".into(),
        quantity: n,
    };
    let request = http::Request::post(format!("{base}/orders"))
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "orders-test/1.0")
        .header(COOKIE, format!("session-id=s-{n}"))
        .body(Full::new(Bytes::from(serde_json::to_vec(&order).unwrap())))
        .unwrap();
    let response = within(client.fetch(request)).await.unwrap();
    assert_eq!(response.head.status, StatusCode::CREATED);
    serde_json::from_slice(&response.body).unwrap()
}

async fn audit(client: &Client, base: &str) -> Vec<AuditRow> {
    serde_json::from_slice(
        &within(client.get(&format!("{base}/audit")))
            .await
            .unwrap()
            .body,
    )
    .unwrap()
}

#[tokio::test]
async fn responses_come_first_and_a_mid_flight_shutdown_loses_no_audit_row() {
    let path = std::env::temp_dir().join(format!("after-orders-test-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let database_url = format!("sqlite://{}", path.display());
    let db = app::connect(&database_url).await.unwrap();

    let gate = Arc::new(Semaphore::new(0));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let (hook_base, _hook_stop, _hook_server) = start(held_webhook(gate.clone(), calls_tx)).await;

    let runtime = AfterRuntime::builder().build();
    let orders = app::app(db.clone(), format!("{hook_base}/webhook"), &runtime);
    let (base, stop, server) = start(orders).await;
    let client = Client::new(Version::Http1);

    // Three orders answered while their webhooks are held: no audit row yet.
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(place(&client, &base, n).await.id);
        let call = within(calls.recv()).await.unwrap();
        assert!(call.contains("order.created"), "{call}");
    }
    assert_eq!(audit(&client, &base).await, []);

    // Two more, then a shutdown while all five are still in flight.
    for n in 4..=5 {
        ids.push(place(&client, &base, n).await.id);
        within(calls.recv()).await.unwrap();
    }
    drop(client);
    stop.send(()).unwrap();
    within(server).await.unwrap();
    let drain = runtime.shutdown(Duration::from_secs(30));
    tokio::pin!(drain);
    assert!(
        poll!(&mut drain).is_pending(),
        "five audit rows are still to be written"
    );
    gate.add_permits(5);
    let report = within(drain).await;
    let s = report.stats;
    assert_eq!((s.registered, s.succeeded), (5, 5), "{report}");

    // Every row was written, with what the request carried and what the webhook said.
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT order_id, user_agent, session, status, webhook FROM audit ORDER BY order_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let expected: Vec<AuditRow> = ids
        .iter()
        .zip(1..)
        .map(|(&order_id, n)| AuditRow {
            order_id,
            user_agent: "orders-test/1.0".into(),
            session: Some(format!("s-{n}")),
            status: Some(201),
            webhook: "204".into(),
        })
        .collect();
    assert_eq!(rows, expected);

    // And `GET /audit` of a fresh instance on the same database shows them.
    let runtime = AfterRuntime::builder().build();
    let (base, stop, server) = start(app::app(db, format!("{hook_base}/webhook"), &runtime)).await;
    let mut listed = audit(&Client::new(Version::Http2), &base).await;
    // Listed in the order they were written, which the concurrent tasks chose.
    listed.sort_by_key(|row| row.order_id);
    assert_eq!(listed, expected);
    stop.send(()).unwrap();
    within(server).await.unwrap();
    let _ = std::fs::remove_file(&path);
}
