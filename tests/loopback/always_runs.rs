//! Always runs: tasks registered before the handler fails, redirects, panics or is abandoned
//! by its client still run, and `outcome()` tells them which it was.

use std::convert::Infallible;

use after_runtime::{after, outcome, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{Events, assert_accounted, with_layer};

fn report(events: &Events, name: &str) {
    let o = outcome().expect("inside a task");
    // A response seen by the layer has a time to response; none, none.
    let timed = o.time_to_response().is_some();
    events.send(format!(
        "{name}: time to response {}",
        if timed == o.status().is_some() {
            "consistent"
        } else {
            "inconsistent"
        }
    ));
    events.send(format!(
        "{name}: {:?} {:?}",
        o.status().map(|s| s.as_u16()),
        o.delivery()
    ));
}

#[with_after]
async fn fails(State(events): State<Events>) -> Result<String, StatusCode> {
    after! { report(&events, "fails") }
    Err(StatusCode::INTERNAL_SERVER_ERROR)
}

#[with_after]
async fn redirects(State(events): State<Events>) -> Redirect {
    after! { report(&events, "redirects") }
    Redirect::to("/elsewhere")
}

#[with_after]
async fn not_found(State(events): State<Events>) -> StatusCode {
    after! { report(&events, "not_found") }
    StatusCode::NOT_FOUND
}

#[with_after]
async fn panics(State(events): State<Events>) -> &'static str {
    after! { report(&events, "panics") }
    panic!("handler bug");
}

#[with_after]
async fn hangs(State(events): State<Events>) -> &'static str {
    let task_events = events.clone();
    after! { report(&task_events, "hangs") }
    events.send("registered");
    std::future::pending::<()>().await;
    unreachable!()
}

/// Registers a task with `after()` when dropped, as a handler's guard may when its
/// future is dropped mid-flight because the client went away.
struct RegistersOnDrop(Events);

impl Drop for RegistersOnDrop {
    fn drop(&mut self) {
        let events = self.0.clone();
        let registered = after(async move { report(&events, "guard") });
        self.0
            .send(format!("guard registered: {}", registered.is_ok()));
    }
}

async fn hangs_with_guard(State(events): State<Events>) -> &'static str {
    let _guard = RegistersOnDrop(events.clone());
    events.send("waiting");
    std::future::pending::<()>().await;
    unreachable!()
}

#[with_after]
async fn endless_body(State(events): State<Events>) -> Body {
    after! { report(&events, "endless_body") }
    let chunks = futures_util::stream::unfold(0u64, |n| async move {
        if n > 0 {
            // Never yields a second chunk: the client must go away mid-body.
            std::future::pending::<()>().await;
        }
        Some((
            Ok::<_, Infallible>(Bytes::from_static(b"first chunk")),
            n + 1,
        ))
    });
    Body::from_stream(chunks)
}

fn app(events: Events) -> (Router, after_runtime::AfterRuntime) {
    let app = Router::new()
        .route("/fails", get(fails))
        .route("/redirects", get(redirects))
        .route("/panics", get(panics))
        .route("/hangs", get(hangs))
        .route("/hangs-with-guard", get(hangs_with_guard))
        .route("/endless", get(endless_body))
        .fallback(not_found)
        .with_state(events)
        .layer(CatchPanicLayer::new());
    with_layer(app)
}

#[tokio::test]
async fn tasks_run_after_errors_redirects_404s_and_panics() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let (app, runtime) = app(events);
        let server = TestServer::start(app).await.unwrap();
        let client = Client::new(version);
        for (path, status, want) in [
            ("/fails", 500, "fails: Some(500) Delivered"),
            ("/redirects", 303, "redirects: Some(303) Delivered"),
            ("/nowhere", 404, "not_found: Some(404) Delivered"),
            ("/panics", 500, "panics: Some(500) Delivered"),
        ] {
            let response = within(client.get(&server.url(path))).await.unwrap();
            assert_eq!(response.head.status, status, "{version:?} {path}");
            let name = want.split(':').next().unwrap();
            let timing = format!("{name}: time to response consistent");
            assert_eq!(within(rx.recv()).await.unwrap(), timing, "{version:?}");
            assert_eq!(within(rx.recv()).await.unwrap(), want, "{version:?}");
        }
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn tasks_run_when_an_http1_client_disconnects_mid_handler() {
    let (events, mut rx) = Events::new();
    let (app, runtime) = app(events);
    let server = TestServer::start(app).await.unwrap();

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /hangs HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "registered");
    assert_eq!(runtime.stats().pending, 1, "held until the handler ends");
    drop(tcp);

    let timing = within(rx.recv()).await.unwrap();
    assert_eq!(timing, "hangs: time to response consistent");
    assert_eq!(within(rx.recv()).await.unwrap(), "hangs: None NotProduced");
    assert_accounted(&runtime);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tasks_run_when_an_http2_stream_is_reset_mid_handler() {
    let (events, mut rx) = Events::new();
    let (app, runtime) = app(events);
    let server = TestServer::start(app).await.unwrap();

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(server.url("/hangs")).body(()).unwrap();
    let (response, mut stream) = sender.send_request(request, true).unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "registered");
    assert_eq!(runtime.stats().pending, 1, "held until the handler ends");
    stream.send_reset(h2::Reason::CANCEL);

    let timing = within(rx.recv()).await.unwrap();
    assert_eq!(timing, "hangs: time to response consistent");
    assert_eq!(within(rx.recv()).await.unwrap(), "hangs: None NotProduced");
    assert!(!connection.is_finished(), "only the stream was reset");
    assert_accounted(&runtime);
    drop((response, stream, sender));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_dropped_mid_flight_can_register_from_its_drop() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let (app, runtime) = app(events);
        let server = TestServer::start(app).await.unwrap();
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        // The client goes away while the handler waits: the server drops its future.
        match version {
            Version::Http1 => {
                let mut tcp = tcp;
                tcp.write_all(b"GET /hangs-with-guard HTTP/1.1\r\nhost: test\r\n\r\n")
                    .await
                    .unwrap();
                assert_eq!(within(rx.recv()).await.unwrap(), "waiting");
                drop(tcp);
            }
            Version::Http2 => {
                let (mut sender, connection) = h2::client::handshake(tcp).await.unwrap();
                let connection = tokio::spawn(connection);
                let request = http::Request::get(server.url("/hangs-with-guard"))
                    .body(())
                    .unwrap();
                let (_response, mut stream) = sender.send_request(request, true).unwrap();
                assert_eq!(within(rx.recv()).await.unwrap(), "waiting");
                stream.send_reset(h2::Reason::CANCEL);
                drop(connection);
            }
        }
        // The guard drops with the request's scope current: its task joins the
        // request, and runs once the request is over, with no response.
        let registered = within(rx.recv()).await.unwrap();
        assert_eq!(registered, "guard registered: true", "{version:?}");
        let timing = within(rx.recv()).await.unwrap();
        assert_eq!(timing, "guard: time to response consistent", "{version:?}");
        let outcome = within(rx.recv()).await.unwrap();
        assert_eq!(outcome, "guard: None NotProduced", "{version:?}");
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn tasks_run_when_the_client_goes_away_mid_body() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let (app, runtime) = app(events);
        let server = TestServer::start(app).await.unwrap();

        let client = Client::new(version);
        let request = http::Request::get(server.url("/endless"))
            .body(Full::default())
            .unwrap();
        let response = within(client.send(request)).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let first = within(body.frame()).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first chunk");
        assert_eq!(
            runtime.stats().pending,
            1,
            "{version:?}: held while the body streams"
        );
        drop(body);
        drop(client);

        let timing = within(rx.recv()).await.unwrap();
        assert_eq!(timing, "endless_body: time to response consistent");
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            "endless_body: Some(200) Aborted",
            "{version:?}"
        );
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}
