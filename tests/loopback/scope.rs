//! Request scope: `after()` works anywhere in the request's task under the layer, and nested in
//! running tasks; outside any request it is an error, never a silent drop.

use after_runtime::{AfterErrorKind, after, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

use crate::{Events, assert_accounted, next_sorted, with_layer};

async fn helper(events: Events) {
    after(async move { events.send("from a helper") }).expect("inside the request scope");
}

async fn handler(State(events): State<Events>) -> &'static str {
    helper(events.clone()).await;
    let outer = events.clone();
    after(async move {
        let inner = outer.clone();
        // Nested: registered from a running task, it starts at once.
        after(async move { inner.send("nested in a task") }).expect("inside a running task");
        outer.send("outer task");
    })
    .unwrap();
    "ok"
}

async fn audit_middleware(State(events): State<Events>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    after(async move { events.send(format!("from middleware for {path}")) }).unwrap();
    next.run(request).await
}

#[with_after]
async fn nested_blocks(State(events): State<Events>) -> &'static str {
    after! {
        events.send("outer block");
        after! {
            events.send("inner block");
        }
    }
    "ok"
}

#[tokio::test]
async fn after_works_in_helpers_middleware_and_running_tasks() {
    let (events, mut rx) = Events::new();
    let app = Router::new()
        .route("/", get(handler))
        .route("/blocks", get(nested_blocks))
        .route_layer(middleware::from_fn_with_state(
            events.clone(),
            audit_middleware,
        ))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();

    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    let seen = next_sorted(&mut rx, 4).await;
    assert_eq!(
        seen,
        [
            "from a helper",
            "from middleware for /",
            "nested in a task",
            "outer task"
        ]
    );

    within(Client::new(Version::Http2).get(&server.url("/blocks")))
        .await
        .unwrap();
    let seen = next_sorted(&mut rx, 3).await;
    assert_eq!(
        seen,
        ["from middleware for /blocks", "inner block", "outer block"]
    );
    assert_accounted(&runtime);
    assert_eq!(runtime.stats().succeeded, 7);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn after_outside_a_request_is_an_error() {
    let err = after(async {}).unwrap_err();
    assert_eq!(err.kind(), AfterErrorKind::NoScope);
    assert!(err.to_string().contains("AfterLayer"), "{err}");

    // A task spawned off the request is another task: no scope there either.
    let spawned = tokio::spawn(async { after(async {}).map_err(|e| e.kind()) });
    assert_eq!(spawned.await.unwrap(), Err(AfterErrorKind::NoScope));
}
