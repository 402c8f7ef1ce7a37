//! A guided tour: a server on 127.0.0.1 sends itself a few requests and prints a
//! timeline of when each response arrives and when its after tasks run.
//!
//! ```text
//! cargo run --example tour
//! ```

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use after_runtime::{AfterLayer, AfterRuntime, after, outcome, with_after};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::USER_AGENT;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
        // `headers` and `cookies` are the request's, kept for its after tasks.
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

/// No `#[with_after]` here: a helper registers with the function `after()`, and its
/// task fails. The failure is logged and counted; the response is unaffected.
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
    // `after()` only fails outside a request under `AfterLayer`, or when the
    // runtime is overloaded or shut down.
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

/// Sends one HTTP/1.1 request on a new connection and returns the status and the
/// body. Written out by hand so the tour needs no HTTP client crate.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n{headers}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    // `connection: close`: the server closes once the response is written.
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Failed tasks are logged at error level; this prints those logs on stderr.
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
        // The last `.layer()` is the outermost: AfterLayer sees every response.
        .layer(AfterLayer::new(runtime.clone()));

    // Serve until the tour is over (or Ctrl-C), then drain: stop the server first so
    // no new work comes in, then wait for the after work already registered.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tour_over, tour_over_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => say("Ctrl-C: stopping the server"),
                    _ = tour_over_rx => {}
                }
            })
            .into_future(),
    );
    say(format!(
        "server listening on http://{addr} (Ctrl-C to stop early)"
    ));

    say("→ POST /orders/1 (its audit task takes 150 ms)");
    let headers = "user-agent: tour/1.0\r\ncookie: session-id=s-42\r\n";
    let (status, body) = send(addr, "POST", "/orders/1", headers).await?;
    say(format!(
        "← {status} \"{body}\": the client did not wait for the audit"
    ));
    // Pauses like this one only keep the timeline readable.
    tokio::time::sleep(Duration::from_millis(200)).await;

    say("→ GET /fail");
    let (status, _) = send(addr, "GET", "/fail", "").await?;
    say(format!("← {status}"));
    tokio::time::sleep(Duration::from_millis(50)).await;

    say("→ POST /notify (a helper calls after(); the webhook will fail)");
    let (status, body) = send(addr, "POST", "/notify", "").await?;
    say(format!("← {status} \"{body}\""));
    tokio::time::sleep(Duration::from_millis(100)).await;

    say("→ GET /slow");
    let (status, body) = send(addr, "GET", "/slow", "").await?;
    say(format!("← {status} \"{body}\""));

    say("shutting down: the server stops, then the runtime drains (grace 5 s)");
    let _ = tour_over.send(());
    server.await??;
    let report = runtime.shutdown(Duration::from_secs(5)).await;
    say(format!("drained: {report}"));
    let s = report.stats;
    assert_eq!(s.registered, s.settled(), "every task reached an end");
    Ok(())
}
