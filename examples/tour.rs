//! A guided tour: a server on 127.0.0.1 sends itself a few requests and prints a
//! timeline of when each response arrives and when its after tasks run.
//!
//! ```text
//! cargo run --example tour
//! ```

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use after_runtime::{AfterLayer, AfterRuntime, after, outcome, with_after};
use after_workspace::{Client, Version, shutdown_signal};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{COOKIE, USER_AGENT};
use axum::routing::{get, post};
use http_body_util::Full;

/// Prints one line of the timeline, stamped with milliseconds since the start.
fn say(line: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0;
    println!("{ms:8.1} ms  {line}");
}

/// Creates an order and answers at once; the audit row is written after the response.
#[with_after]
async fn create_order(Path(id): Path<u32>) -> (StatusCode, String) {
    after! {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned();
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        // Pretend the audit database is slow.
        tokio::time::sleep(Duration::from_millis(150)).await;
        say(format!("   after task: audit row for order {id} written (agent {agent}, session {session:?})"));
    }
    (StatusCode::CREATED, format!("order {id} created"))
}

/// Fails with a 500, yet its task still runs, and knows the response was a 500.
#[with_after]
async fn fail() -> Result<&'static str, StatusCode> {
    after! {
        let o = outcome().expect("inside an after task");
        say(format!(
            "   after task: ran after a {} response ({:?}): errors never skip after work \
             (tasks start once the server has written the body, so this may print before \
             the client reads it)",
            o.status().map_or(0, |s| s.as_u16()),
            o.delivery()
        ));
    }
    Err(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Registers with the function `after()`, from a helper, and a task that fails: it is
/// logged and counted, and the response is unaffected.
async fn notify() -> &'static str {
    send_webhook();
    "queued"
}

fn send_webhook() {
    let registered = after(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        say("   after task: webhook call failed (logged and counted, client unaffected)");
        Err::<(), _>("webhook answered 503")
    });
    registered.expect("inside a request under AfterLayer");
}

/// A slow task still running when the server shuts down: the drain waits for it.
#[with_after]
async fn slow() -> &'static str {
    after! {
        tokio::time::sleep(Duration::from_millis(300)).await;
        say("   after task: slow report finished during the shutdown drain");
    }
    "report started"
}

#[tokio::main]
async fn main() -> Result<(), after_workspace::BoxError> {
    // Error-level logs from failed tasks go to stderr.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(std::io::stderr)
        .compact()
        .init();

    let runtime = AfterRuntime::builder().max_concurrency(16).build();
    let app = Router::new()
        .route("/orders/{id}", post(create_order))
        .route("/fail", get(fail))
        .route("/notify", post(notify))
        .route("/slow", get(slow))
        .layer(AfterLayer::new(runtime.clone()));
    // The graceful-shutdown recipe: serve until SIGTERM or Ctrl-C (here also until
    // the tour is over), then drain the runtime.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tour_over, tour_over_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::select! {
                    () = shutdown_signal() => say("signal received: stopping the server"),
                    _ = tour_over_rx => {}
                }
            })
            .into_future(),
    );
    let url = |path: &str| format!("http://{addr}{path}");
    say(format!(
        "server listening on http://{addr} (Ctrl-C to stop early)"
    ));
    let client = Client::new(Version::Http1);

    say("→ POST /orders/1 (its audit task takes 150 ms)");
    let request = http::Request::post(url("/orders/1"))
        .header(USER_AGENT, "tour/1.0")
        .header(COOKIE, "session-id=s-42")
        .body(Full::default())?;
    let response = client.fetch(request).await?;
    say(format!(
        "← {} \"{}\": the client did not wait for the audit",
        response.head.status,
        response.text()
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    say("→ GET /fail");
    let response = client.get(&url("/fail")).await?;
    say(format!("← {}", response.head.status));
    tokio::time::sleep(Duration::from_millis(50)).await;

    say("→ POST /notify (a helper calls after(); the webhook will fail)");
    let response = client
        .fetch(http::Request::post(url("/notify")).body(Full::default())?)
        .await?;
    say(format!(
        "← {} \"{}\"",
        response.head.status,
        response.text()
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;

    say("→ GET /slow");
    let response = client.get(&url("/slow")).await?;
    say(format!(
        "← {} \"{}\"",
        response.head.status,
        response.text()
    ));

    say("shutting down: the server stops, then the runtime drains (grace 5 s)");
    let _ = tour_over.send(());
    server.await??;
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    say(format!("drained: {report}"));
    let s = report.stats;
    assert_eq!(s.registered, s.settled(), "every task reached an end");
    Ok(())
}
