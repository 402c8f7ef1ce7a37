//! A handful of clients that stop reading their responses cannot turn every other
//! request's after work away: each request holds at most `max_pending_per_request`
//! tasks, and a task that can start at once is never refused for want of room to
//! wait.

use std::convert::Infallible;
use std::time::Duration;

use after_runtime::{AfterLayer, AfterRuntime, after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::{Events, Gate, assert_accounted};

/// Registers four tasks, then streams one chunk and stalls: a client that reads
/// the chunk and stops keeps the tasks waiting.
async fn stalls(State(events): State<Events>) -> Body {
    let results: Vec<_> = (0..4)
        .map(|_| after(async {}).map_err(|e| e.kind()))
        .collect();
    events.send(format!("{results:?}"));
    let chunks = futures_util::stream::unfold(0, |n| async move {
        if n > 0 {
            std::future::pending::<()>().await;
        }
        Some((Ok::<_, Infallible>(Bytes::from_static(b"chunk")), n + 1))
    });
    Body::from_stream(chunks)
}

async fn normal(State(events): State<Events>) -> &'static str {
    let task_events = events.clone();
    let registered = after(async move { task_events.send("normal task ran") });
    events.send(format!("{:?}", registered.map_err(|e| e.kind())));
    "ok"
}

fn bounded(events: Events, runtime: &AfterRuntime) -> Router {
    Router::new()
        .route("/stalls", get(stalls))
        .route("/normal", get(normal))
        .with_state(events)
        .layer(AfterLayer::new(runtime.clone()))
}

#[tokio::test]
async fn stalled_responses_do_not_exhaust_max_pending_for_everyone() {
    for version in Version::BOTH {
        let runtime = AfterRuntime::builder()
            .max_pending(8)
            .max_pending_per_request(2)
            .build();
        let (events, mut rx) = Events::new();
        let server = TestServer::start(bounded(events, &runtime)).await.unwrap();

        let mut stalled = Vec::new();
        for _ in 0..3 {
            let client = Client::new(version);
            let request = http::Request::get(server.url("/stalls"))
                .body(Full::default())
                .unwrap();
            let mut body = within(client.send(request)).await.unwrap().into_body();
            within(body.frame()).await.unwrap().unwrap();
            assert_eq!(
                within(rx.recv()).await.unwrap(),
                "[Ok(()), Ok(()), Err(Overloaded), Err(Overloaded)]",
                "{version:?}: two held, the rest refused for this request alone"
            );
            stalled.push((client, body));
        }
        let s = runtime.stats();
        assert_eq!((s.pending, s.rejected), (6, 6), "{version:?}");

        within(Client::new(version).get(&server.url("/normal")))
            .await
            .unwrap();
        assert_eq!(within(rx.recv()).await.unwrap(), "Ok(())", "{version:?}");
        assert_eq!(within(rx.recv()).await.unwrap(), "normal task ran");
        assert_accounted(&runtime);

        drop(stalled);
        let report = within(runtime.shutdown(Duration::from_secs(10))).await;
        assert_eq!(report.stats.succeeded, 7, "{version:?}: {:?}", report.stats);
        drop(server);
    }
}

#[derive(Clone)]
struct Nest {
    gate: Gate,
    events: Events,
}

async fn nests(State(n): State<Nest>) -> &'static str {
    after(async move {
        n.gate.wait().await;
        let events = n.events.clone();
        let nested = after(async move { events.send("nested task ran") });
        n.events
            .send(format!("nested: {:?}", nested.map_err(|e| e.kind())));
    })
    .unwrap();
    "ok"
}

#[tokio::test]
async fn a_nested_task_starts_on_a_free_slot_even_when_max_pending_is_full() {
    let runtime = AfterRuntime::builder()
        .max_pending(2)
        .max_pending_per_request(2)
        .build();
    let (events, mut rx) = Events::new();
    let gate = Gate::new();
    let nest = Router::new().route("/nests", get(nests)).with_state(Nest {
        gate: gate.clone(),
        events: events.clone(),
    });
    let app = bounded(events, &runtime).merge(nest.layer(AfterLayer::new(runtime.clone())));
    let server = TestServer::start(app).await.unwrap();
    let client = Client::new(Version::Http1);
    within(client.get(&server.url("/nests"))).await.unwrap();

    // A stalled response fills `max_pending`.
    let request = http::Request::get(server.url("/stalls"))
        .body(Full::default())
        .unwrap();
    let mut body = within(client.send(request)).await.unwrap().into_body();
    within(body.frame()).await.unwrap().unwrap();
    within(rx.recv()).await.unwrap();
    assert_eq!(runtime.stats().pending, 2);

    gate.open();
    let mut seen = vec![
        within(rx.recv()).await.unwrap(),
        within(rx.recv()).await.unwrap(),
    ];
    seen.sort();
    assert_eq!(seen, ["nested task ran", "nested: Ok(())"]);
    assert_accounted(&runtime);
    drop((body, client));
    within(runtime.shutdown(Duration::from_secs(10))).await;
    drop(server);
}
