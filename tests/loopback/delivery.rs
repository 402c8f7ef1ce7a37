//! Register, never wait: registering never delays the response, and tasks start only once the
//! response is finished, including bodies hyper drops unpolled.

use std::convert::Infallible;

use after_runtime::{after, outcome, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::{Events, Gate, Handoff, assert_accounted, with_layer};

#[derive(Clone)]
struct Blocked {
    gate: Gate,
    events: Events,
}

#[with_after]
async fn blocked(State(s): State<Blocked>) -> &'static str {
    after! {
        s.gate.wait().await;
        s.events.send("task finished");
    }
    "response"
}

#[tokio::test]
async fn response_arrives_while_the_task_is_still_blocked() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let gate = Gate::new();
        let app = Router::new().route("/", get(blocked)).with_state(Blocked {
            gate: gate.clone(),
            events,
        });
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();

        let response = within(Client::new(version).get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(response.text(), "response");
        // The whole response is here, and the task has started but is held at the gate.
        let stats = runtime.stats();
        assert_eq!(
            (stats.running, stats.succeeded),
            (1, 0),
            "{version:?}: {stats:?}"
        );
        assert!(rx.try_recv().is_err());

        gate.open();
        assert_eq!(within(rx.recv()).await.unwrap(), "task finished");
        server.stop().await.unwrap();
        runtime.shutdown(std::time::Duration::from_secs(5)).await;
        assert_eq!(runtime.stats().succeeded, 1);
    }
}

#[derive(Clone)]
struct Streaming {
    chunks: Handoff<mpsc::Receiver<Bytes>>,
    events: Events,
}

#[with_after]
async fn streaming(State(s): State<Streaming>) -> Body {
    let events = s.events.clone();
    after! {
        let outcome = outcome().expect("inside a task");
        events.send(format!("task ran: {:?}", outcome.delivery()));
    }
    let chunks = s.chunks.take();
    Body::from_stream(futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    }))
}

#[tokio::test]
async fn a_streaming_body_holds_its_tasks_until_it_ends() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let (chunk_tx, chunk_rx) = mpsc::channel(4);
        let app = Router::new()
            .route("/", get(streaming))
            .with_state(Streaming {
                chunks: Handoff::new(chunk_rx),
                events,
            });
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();

        let client = Client::new(version);
        let request = http::Request::get(server.url("/"))
            .body(Full::default())
            .unwrap();
        let mut body = within(client.send(request)).await.unwrap().into_body();
        chunk_tx.send(Bytes::from_static(b"first")).await.unwrap();
        let frame = within(body.frame()).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first");

        // The client holds part of the body: the task is registered but not started.
        let stats = runtime.stats();
        assert_eq!(
            (stats.pending, stats.running, stats.succeeded),
            (1, 0, 0),
            "{version:?}"
        );
        assert!(rx.try_recv().is_err());

        chunk_tx.send(Bytes::from_static(b"last")).await.unwrap();
        drop(chunk_tx);
        let rest = within(body.collect()).await.unwrap().to_bytes();
        assert_eq!(rest, "last");
        assert_eq!(within(rx.recv()).await.unwrap(), "task ran: Delivered");
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}

/// Responses hyper finishes without polling the body to its end.
#[with_after]
async fn unpolled(State(events): State<Events>, uri: axum::http::Uri) -> axum::response::Response {
    after! {
        let outcome = outcome().expect("inside a task");
        events.send(format!("{:?} {:?}", outcome.status().map(|s| s.as_u16()), outcome.delivery()));
    }
    use axum::response::IntoResponse;
    match uri.path() {
        "/empty" => ().into_response(),
        "/no-content" => StatusCode::NO_CONTENT.into_response(),
        _ => "a fixed-length body".into_response(),
    }
}

#[tokio::test]
async fn empty_head_204_and_fixed_length_bodies_still_run_their_tasks() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let app = Router::new()
            .route("/empty", get(unpolled))
            .route("/no-content", get(unpolled))
            .route("/fixed", get(unpolled))
            .with_state(events);
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();
        let client = Client::new(version);

        for (method, path, want) in [
            ("GET", "/empty", "Some(200) Delivered"),
            ("GET", "/no-content", "Some(204) Delivered"),
            ("GET", "/fixed", "Some(200) Delivered"),
            ("HEAD", "/fixed", "Some(200) Delivered"),
        ] {
            let request = http::Request::builder()
                .method(method)
                .uri(server.url(path))
                .body(Full::default())
                .unwrap();
            within(client.fetch(request)).await.unwrap();
            assert_eq!(
                within(rx.recv()).await.unwrap(),
                want,
                "{version:?} {method} {path}"
            );
        }
        assert_eq!(runtime.stats().succeeded, 4);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn registering_from_a_plain_handler_never_waits() {
    // `after()` returns at once even when the runtime has no free slot.
    let runtime = after_runtime::AfterRuntime::builder()
        .max_concurrency(1)
        .max_pending_per_request(100)
        .build();
    let gate = Gate::new();
    let g = gate.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let g = g.clone();
                async move {
                    for _ in 0..100 {
                        let g = g.clone();
                        after(async move { g.wait().await }).unwrap();
                    }
                    "registered 100"
                }
            }),
        )
        .layer(after_runtime::AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await.unwrap();
    let response = within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(response.text(), "registered 100");
    let stats = runtime.stats();
    assert_eq!((stats.running, stats.pending), (1, 99));
    for _ in 0..100 {
        gate.open();
    }
    let report = runtime.shutdown(std::time::Duration::from_secs(10)).await;
    assert_eq!(report.stats.succeeded, 100);
    server.stop().await.unwrap();
}

/// A streamed body with a declared length whose stream never ends by itself: hyper
/// (HTTP/1.1) stops polling once the declared bytes are written, and drops it.
#[with_after]
async fn declared_length(State(events): State<Events>) -> axum::response::Response {
    after! {
        let outcome = outcome().expect("inside a task");
        events.send(format!("{:?}", outcome.delivery()));
    }
    let chunks =
        futures_util::stream::iter([Bytes::from_static(b"hello"), Bytes::from_static(b"world")])
            .map(Ok::<_, Infallible>)
            .chain(futures_util::stream::pending());
    axum::response::Response::builder()
        .header(http::header::CONTENT_LENGTH, "10")
        .body(Body::from_stream(chunks))
        .unwrap()
}

#[tokio::test]
async fn a_streamed_body_of_declared_length_counts_as_delivered() {
    let (events, mut rx) = Events::new();
    let app = Router::new()
        .route("/", get(declared_length))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();
    let response = within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(response.text(), "helloworld");
    assert_eq!(within(rx.recv()).await.unwrap(), "Delivered");
    assert_accounted(&runtime);
    server.stop().await.unwrap();
}

/// A status that has no body on the wire, answered with a body anyway.
#[with_after]
async fn bodiless(State(events): State<Events>, uri: axum::http::Uri) -> (StatusCode, String) {
    after! {
        let o = outcome().expect("inside a task");
        events.send(format!("{:?} {:?}", o.status().map(|s| s.as_u16()), o.delivery()));
    }
    let status = match uri.path() {
        "/204" => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_MODIFIED,
    };
    (status, "a body the server does not send".to_owned())
}

#[tokio::test]
async fn a_204_or_304_with_a_body_is_delivered_on_both_protocols() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let app = Router::new()
            .route("/204", get(bodiless))
            .route("/304", get(bodiless))
            .with_state(events);
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();
        let client = Client::new(version);
        for (path, status) in [("/204", 204), ("/304", 304)] {
            let response = within(client.get(&server.url(path))).await.unwrap();
            assert_eq!(response.head.status, status);
            // HTTP/1.1 sends no body for these; hyper's HTTP/2 sends it whole. The
            // client has a complete response either way.
            assert_eq!(
                within(rx.recv()).await.unwrap(),
                format!("Some({status}) Delivered"),
                "{version:?}"
            );
        }
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}
