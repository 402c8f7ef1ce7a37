//! Middleware that moves the handler's future to another task never loses its tasks:
//! they stay on the runtime of the `AfterLayer` that served the request, counted
//! there, started after that response, and drained by its shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use after_runtime::{after, outcome, with_after};
use after_workspace::{Client, TestServer, Version, within};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::poll;

use crate::{Events, Gate, assert_accounted, with_layer};

#[derive(Clone)]
struct Detach {
    gate: Gate,
    events: Events,
}

/// Answers `202 Accepted` when the handler is not done at its first poll, and lets
/// it finish in a task of its own.
async fn detach_slow_handlers(request: Request, next: Next) -> Response {
    let mut handler = Box::pin(next.run(request));
    match poll!(handler.as_mut()) {
        std::task::Poll::Ready(response) => response,
        std::task::Poll::Pending => {
            tokio::spawn(handler);
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// Registers only once the middleware has detached it. The block reads neither
/// `headers` nor `cookies`.
#[with_after]
async fn slow(State(d): State<Detach>) -> &'static str {
    d.events.send("handler waits");
    d.gate.wait().await;
    after!(clone(d) {
        let o = outcome().expect("inside a task");
        d.events.send(format!("task ran after {:?}", o.status().map(|s| s.as_u16())));
    });
    d.events.send("handler registered");
    "done"
}

#[tokio::test]
async fn a_handler_detached_by_middleware_keeps_its_tasks_on_the_layer_runtime() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let gate = Gate::new();
        let app = Router::new()
            .route("/", get(slow))
            .layer(middleware::from_fn(detach_slow_handlers))
            .with_state(Detach {
                gate: gate.clone(),
                events,
            });
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();

        let response = within(Client::new(version).get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(response.head.status, StatusCode::ACCEPTED, "{version:?}");
        assert_eq!(within(rx.recv()).await.unwrap(), "handler waits");

        gate.open();
        assert_eq!(within(rx.recv()).await.unwrap(), "handler registered");
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            "task ran after Some(202)",
            "{version:?}: the task belongs to the 202 its request answered"
        );
        server.stop().await.unwrap();
        let report = runtime.shutdown(Duration::from_secs(10)).await;
        assert_eq!(
            (report.stats.registered, report.stats.succeeded),
            (1, 1),
            "{version:?}: counted on the layer's runtime"
        );
        assert_accounted(&runtime);
    }
}

/// Runs the rest of the stack in a task of its own, as some middleware does to
/// isolate panics or to bound the stack.
async fn spawn_inner(request: Request, next: Next) -> Response {
    tokio::spawn(next.run(request))
        .await
        .expect("the handler does not panic")
}

#[derive(Clone)]
struct Spawned {
    gate: Gate,
    events: Events,
}

#[with_after]
async fn spawned(State(s): State<Spawned>) -> &'static str {
    after!(clone(s) {
        s.gate.wait().await;
        let o = outcome().expect("inside a task");
        s.events.send(format!(
            "task saw {:?} {:?}",
            o.status().map(|s| s.as_u16()),
            o.delivery()
        ));
    });
    s.events.send("handler returned");
    "ok"
}

#[tokio::test]
async fn a_handler_spawned_by_middleware_registers_on_the_layer_runtime_after_its_response() {
    for version in Version::BOTH {
        let (events, mut rx) = Events::new();
        let gate = Gate::new();
        let app = Router::new()
            .route("/", get(spawned))
            .layer(middleware::from_fn(spawn_inner))
            .with_state(Spawned {
                gate: gate.clone(),
                events,
            });
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();

        let response = within(Client::new(version).get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(response.text(), "ok");
        assert_eq!(within(rx.recv()).await.unwrap(), "handler returned");
        let stats = runtime.stats();
        assert_eq!(
            (stats.registered, stats.running),
            (1, 1),
            "{version:?}: counted on the layer's runtime, started once the response ended"
        );
        server.stop().await.unwrap();

        // Drained by the layer runtime's shutdown.
        let shutdown = runtime.shutdown(Duration::from_secs(60));
        tokio::pin!(shutdown);
        assert!(poll!(&mut shutdown).is_pending(), "the task still waits");
        gate.open();
        assert_eq!(
            within(rx.recv()).await.unwrap(),
            "task saw Some(200) Delivered",
            "{version:?}"
        );
        let report = within(shutdown).await;
        assert_eq!((report.stats.succeeded, report.stats.cancelled), (1, 0));
        assert_accounted(&runtime);
    }
}

/// `after()` in a handler that middleware moved to another task: told, never a
/// silent drop. (`after!` blocks work there, above.)
async fn plain_spawned(State(events): State<Events>) -> &'static str {
    let registered = after(async {});
    events.send(format!("{:?}", registered.map_err(|e| e.kind())));
    "ok"
}

#[tokio::test]
async fn after_in_a_handler_spawned_by_middleware_is_an_error_not_a_loss() {
    let (events, mut rx) = Events::new();
    let app = Router::new()
        .route("/", get(plain_spawned))
        .layer(middleware::from_fn(spawn_inner))
        .with_state(events);
    let (app, runtime) = with_layer(app);
    let server = TestServer::start(app).await.unwrap();
    within(Client::new(Version::Http1).get(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "Err(NoScope)");
    assert_eq!(runtime.stats().registered, 0);
    assert_accounted(&runtime);
    server.stop().await.unwrap();
}

/// How many tasks of `spawned_without_parameters` ran; only its test reads it.
static RAN_WITHOUT_PARAMETERS: AtomicUsize = AtomicUsize::new(0);

/// A handler with no parameter of its own takes its scope from the whole request.
#[with_after]
async fn spawned_without_parameters() -> &'static str {
    after! {
        RAN_WITHOUT_PARAMETERS.fetch_add(1, Ordering::SeqCst);
    }
    "ok"
}

#[tokio::test]
async fn a_handler_with_no_parameter_of_its_own_spawned_by_middleware_stays_on_the_layer_runtime() {
    for version in Version::BOTH {
        let app = Router::new()
            .route("/", get(spawned_without_parameters))
            .layer(middleware::from_fn(spawn_inner));
        let (app, runtime) = with_layer(app);
        let server = TestServer::start(app).await.unwrap();
        let before = RAN_WITHOUT_PARAMETERS.load(Ordering::SeqCst);

        let response = within(Client::new(version).get(&server.url("/")))
            .await
            .unwrap();
        assert_eq!(response.text(), "ok");
        within(runtime.wait_idle()).await;
        let stats = runtime.stats();
        assert_eq!(
            (stats.registered, stats.succeeded),
            (1, 1),
            "{version:?}: counted on the layer's runtime, not the global one"
        );
        assert_eq!(RAN_WITHOUT_PARAMETERS.load(Ordering::SeqCst), before + 1);
        assert_accounted(&runtime);
        server.stop().await.unwrap();
    }
}
