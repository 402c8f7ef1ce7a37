//! Order and context: a request's tasks run concurrently, and see its headers and cookies.

use after_runtime::{after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{COOKIE, USER_AGENT};
use axum::routing::get;
use http_body_util::Full;
use tokio::sync::oneshot;

use crate::{Events, Handoff, assert_accounted, next_sorted, with_layer};

#[derive(Clone)]
struct Pair {
    signal: Handoff<(oneshot::Sender<()>, oneshot::Receiver<()>)>,
    events: Events,
}

#[with_after]
async fn two_tasks(State(s): State<Pair>) -> &'static str {
    let (tx, rx) = s.signal.take();
    let first = s.events.clone();
    // The first task waits for the second: run one after the other, they would hang.
    after! {
        rx.await.expect("the second task signals");
        first.send("first saw the second");
    }
    let second = s.events.clone();
    after! {
        tx.send(()).unwrap();
        second.send("second signalled");
    }
    "ok"
}

#[tokio::test]
async fn a_requests_tasks_run_concurrently() {
    let (events, mut rx) = Events::new();
    let app = Router::new().route("/", get(two_tasks)).with_state(Pair {
        signal: Handoff::new(oneshot::channel()),
        events,
    });
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();
    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    let seen = next_sorted(&mut rx, 2).await;
    assert_eq!(seen, ["first saw the second", "second signalled"]);
    assert_eq!(runtime.stats().succeeded, 2);
    server.stop().await.unwrap();
}

#[with_after]
async fn echo_context(State(events): State<Events>) -> &'static str {
    let second = events.clone();
    after! {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("none");
        let session = cookies.get("session-id").map(|c| c.value().to_owned());
        let theme = cookies.get("theme").map(|c| c.value().to_owned());
        events.send(format!("agent={agent} session={session:?} theme={theme:?}"));
    }
    // A second task reads the same captured values.
    after! {
        second.send(format!("cookies={}", cookies.iter().count()));
    }
    "ok"
}

fn context_app() -> (
    Router,
    after_runtime::AfterRuntime,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (events, rx) = Events::new();
    let app = Router::new()
        .route("/", get(echo_context))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    (app, runtime, rx)
}

/// A `GET` of `url` with a user agent and two cookies.
fn with_agent_and_cookies(url: &str) -> http::Request<Full<bytes::Bytes>> {
    http::Request::get(url)
        .header(USER_AGENT, "loopback-test/1.0")
        .header(COOKIE, "session-id=abc123; theme=dark")
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn tasks_see_the_requests_headers_and_cookies() {
    for version in Version::BOTH {
        let (app, runtime, mut rx) = context_app();
        let server = TestServer::start(app).await.unwrap();
        let request = with_agent_and_cookies(&server.url("/"));
        within(Client::new(version).fetch(request)).await.unwrap();
        let seen = next_sorted(&mut rx, 2).await;
        assert_eq!(
            seen,
            [
                r#"agent=loopback-test/1.0 session=Some("abc123") theme=Some("dark")"#,
                "cookies=2",
            ],
            "{version:?}"
        );
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}

/// What `echo_without_parameters`'s task saw; only its test reads it.
static SAW_WITHOUT_PARAMETERS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A handler with no parameter of its own takes its scope, and the headers its block
/// reads, from the whole request.
#[with_after]
async fn echo_without_parameters() -> &'static str {
    after! {
        let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("none");
        let theme = cookies.get("theme").map(|c| c.value().to_owned());
        let seen = format!("agent={agent} theme={theme:?}");
        SAW_WITHOUT_PARAMETERS.lock().unwrap().push(seen);
    }
    "ok"
}

#[tokio::test]
async fn a_handler_with_no_parameter_of_its_own_sees_them_too() {
    for version in Version::BOTH {
        let (app, runtime) = with_layer(Router::new().route("/", get(echo_without_parameters)));
        let server = TestServer::start(app).await.unwrap();
        let request = with_agent_and_cookies(&server.url("/"));
        within(Client::new(version).fetch(request)).await.unwrap();
        within(runtime.wait_idle()).await;
        let seen = std::mem::take(&mut *SAW_WITHOUT_PARAMETERS.lock().unwrap());
        assert_eq!(
            seen,
            [r#"agent=loopback-test/1.0 theme=Some("dark")"#],
            "{version:?}"
        );
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn malformed_cookies_are_skipped_without_panic_or_delay() {
    let (app, runtime, mut rx) = context_app();
    let server = TestServer::start(app).await.unwrap();
    let request = http::Request::get(server.url("/"))
        .header(
            COOKIE,
            HeaderValue::from_bytes(b"theme=\xff\xfe; ;; =; novalue").unwrap(),
        )
        .header(COOKIE, "session-id=ok;;")
        .body(Full::default())
        .unwrap();
    let response = within(Client::new(Version::Http1).fetch(request))
        .await
        .unwrap();
    assert_eq!(response.head.status, 200);
    let seen = next_sorted(&mut rx, 2).await;
    assert_eq!(
        seen,
        [r#"agent=none session=Some("ok") theme=None"#, "cookies=1"]
    );
    assert_eq!(runtime.stats().succeeded, 2, "no task panicked");
    server.stop().await.unwrap();
}
