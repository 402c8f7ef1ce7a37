//! Run work after an axum response has been sent, like Next.js's `after()`, with what
//! a long-running server needs: tasks drain on graceful shutdown, concurrency and
//! memory are bounded, errors and panics are isolated and logged, and every task is
//! counted so none is silently lost.
//!
//! ```
//! use after_runtime::{after, with_after, AfterLayer, AfterRuntime};
//! use axum::{extract::Path, http::header::USER_AGENT, routing::post, Router};
//!
//! #[with_after]
//! async fn create_order(Path(id): Path<u64>) -> String {
//!     after! {
//!         // Runs once the response is out; sees the request's headers and cookies.
//!         let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
//!         let session = cookies.get("session-id").map(|c| c.value().to_owned());
//!         tracing::info!(id, agent, ?session, "order.created");
//!     }
//!     format!("order {id}")
//! }
//!
//! let runtime = AfterRuntime::builder().max_concurrency(256).build();
//! let app: Router = Router::new()
//!     .route("/orders/{id}", post(create_order))
//!     .layer(AfterLayer::new(runtime.clone()));
//! // axum::serve(listener, app).with_graceful_shutdown(signal).await?;
//! // let report = runtime.shutdown(Duration::from_secs(30)).await;
//! # let _ = app;
//! ```
//!
//! # The model
//!
//! - **Register, never wait.** `after! { ... }` and [`after()`](fn@after) only enqueue;
//!   they never await and never block the handler.
//! - **When tasks start.** Under [`AfterLayer`], when the response is finished: its
//!   body reached its end, or the server dropped it (empty bodies, `HEAD`, `204`).
//!   Without the layer, when the handler's future completes or is dropped. Never
//!   before.
//! - **Always runs.** Tasks registered before the handler returns an error, a
//!   redirect or a 404, panics, or is cancelled because the client went away, still
//!   run, as in Next.js. [`outcome()`] tells a task which of these happened.
//! - **Order and concurrency.** A request's tasks are handed to the executor in
//!   registration order and run concurrently; their first polls may interleave on a
//!   multi-threaded runtime, so put work that must be sequential in one block.
//! - **Isolation.** A task that returns `Err`, panics or overruns its timeout is
//!   caught, counted and logged through `tracing` at error level with the request's
//!   method, path and the `file:line` of its block. It never affects the response,
//!   other tasks or the server.
//! - **Nothing lost.** Every registered task ends exactly once: succeeded, failed,
//!   panicked, timed out, rejected or cancelled; [`AfterRuntime::stats`] counts each.
//! - **Composition never loses work.** A `#[with_after]` handler that middleware
//!   moves to another task (`tokio::spawn(next.run(req))`, or detached after a
//!   timeout) keeps its tasks on the runtime of the [`AfterLayer`] that served the
//!   request: counted there, started after that response, drained by its shutdown.
//! - **Shutdown.** [`AfterRuntime::shutdown`] waits for pending and running tasks
//!   (including ones registered while it waits), then cancels what remains at the
//!   deadline and reports where each was registered.
//! - **Bounded.** `max_concurrency` tasks run at once and `max_pending` wait; past
//!   that the [`OverloadPolicy`] applies. One request holds at most
//!   `max_pending_per_request` tasks while its response is unfinished, so a few
//!   clients that stop reading cannot fill `max_pending` for everyone.
//!
//! In-memory tasks do not survive a crash or a `kill -9`. Work that must happen
//! belongs in a durable queue (a table your handler writes in its transaction, or a
//! job queue backed by PostgreSQL or Redis).
//!
//! # How it is built
//!
//! `ARCHITECTURE.md`, at the root of the repository, maps the source for a reader:
//! which file holds what, which way its imports point, and how a task travels from
//! `after!` or [`after()`](fn@after) to its end.
//!
//! # Compared with the alternatives
//!
//! | | `after_runtime` | Next.js `after()` | `tokio::spawn` in the handler | FastAPI `BackgroundTasks` |
//! |---|---|---|---|---|
//! | starts | when the response is finished | after the response | at once, before the response | after the response |
//! | runs after an error / panic | yes | yes | yes (if spawned before) | no for exceptions |
//! | runs when the client disconnects | yes | yes | yes | no (Starlette skips them) |
//! | sees request headers / cookies | `headers`, `cookies` in `after!` | `headers()`, `cookies()` | copy them by hand | pass them by hand |
//! | knows the response's status and delivery | [`outcome()`] | no | no | no |
//! | drained on graceful shutdown | [`AfterRuntime::shutdown`] | platform-dependent | no, lost | while the worker lives |
//! | bounded concurrency and memory | `max_concurrency`, `max_pending` | unbounded | unbounded | sequential |
//! | panics and errors | caught, counted, logged with `file:line` | logged | lost in the `JoinHandle` | logged |
//! | every task counted | [`Stats`] | no | no | no |
//!
//! # Layer order
//!
//! Put [`AfterLayer`] outside `CatchPanicLayer`, `TimeoutLayer` and other layers that
//! turn failures into responses, so the tasks see the response the client got:
//!
//! ```
//! use after_runtime::{AfterLayer, AfterRuntime};
//! use axum::{routing::get, Router};
//! use tower_http::catch_panic::CatchPanicLayer;
//!
//! let runtime = AfterRuntime::builder().build();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(CatchPanicLayer::new()) // inner: a panic becomes a 500 ...
//!     .layer(AfterLayer::new(runtime)); // outer: ... which the tasks see
//! # let _ = app;
//! ```
//!
//! # What the layer costs
//!
//! The layer makes each request's scope when the request enters it, and puts a
//! reference in the request's extensions: a `#[with_after]` handler finds its scope
//! there wherever it runs, also when middleware moves it to another task, where the
//! task-local `after()` uses is not set. That costs a request that registers nothing
//! two or three allocations (the scope, its extensions entry, and at times one
//! growth of the extensions' map or the copy of a path over 62 bytes), which
//! `tests/allocations.rs` bounds. Correctness wins over the last allocation here:
//! without it, such a handler's tasks were lost or ran on the wrong runtime. A
//! `#[with_after]` handler whose `after!` blocks do not run adds nothing to that.
//!
//! # Without the layer
//!
//! A `#[with_after]` handler served without any [`AfterLayer`] still runs its tasks,
//! on [`AfterRuntime::global`], once its future ends (there is no response to watch),
//! and the first such request logs a warning that names the fix. Drain the global
//! runtime at exit like any other (`AfterRuntime::global().shutdown(grace)`), or add
//! the layer. [`after()`](fn@after) needs the layer (or a running task) and returns
//! [`AfterErrorKind::NoScope`] without it.
//!
//! # At the edges
//!
//! - [`Delivery::Delivered`] means the server was handed the whole body, not that the
//!   client read it: a body shorter than its `Content-Length`, a large body the
//!   client never read, or an HTTP/2 protocol error after the last frame all read
//!   `Delivered`. `HEAD`, `204`, `304` and `1xx` responses have no body on the wire
//!   and are delivered once their head is out, on every protocol.
//! - WebSockets: an `after!` in the upgrading handler runs when the `101` is sent,
//!   not when the socket closes. Inside `on_upgrade`, `after()` returns `NoScope` (the
//!   callback runs in a task of its own) while `after!` works (its block carries the
//!   request's context).
//! - `after()` called from inside a response body's stream returns `NoScope`: the
//!   body is polled after the handler's future, outside the request scope.
//! - [`AfterRuntime::shutdown`] called from inside a request waits for that request
//!   too, so at the deadline it cancels the request's own tasks.
//! - Under `Router::nest`, logs show the path the layer saw: an `AfterLayer` inside
//!   a nested router sees the path without its prefix. Put the layer on the
//!   outermost router to log full paths.
//! - An HTTP/1.1 client that pipelines bytes and then closes during an idle SSE
//!   stream is not noticed by hyper until the server next writes, so that request's
//!   tasks wait until shutdown. Send SSE keep-alives (axum's `Sse::keep_alive`).

//! # Tracing
//!
//! Each task runs in an `after_task` span with `method`, `path` and `location`
//! (`file:line:column`) fields, when a subscriber is interested in it (otherwise no
//! span is built at all). The span has no parent and *follows from* the span that was
//! current where the request entered [`AfterLayer`] (a `TraceLayer` request span,
//! when that layer is outside it): a task
//! must not keep its request's span open, or traces would show the request lasting
//! as long as its after work. Subscribers that export links (OpenTelemetry)
//! join the two; `fmt` prints the task's own fields. Failures, panics, timeouts,
//! rejections and cancellations are logged at error level with `method`, `path` and
//! `location` on the event itself, so they read the same under any subscriber.
//!
//! # Minimum supported Rust version
//!
//! 1.88: it is the first stable release where a procedural macro can read a token's
//! line and column, which `after!` blocks need for their `file:line`; edition 2024
//! needs 1.85 and the dependencies need at most that. CI builds with the one toolchain
//! installed on its machines (1.95); older ones are not exercised.
//!
//! # Graceful shutdown
//!
//! Stop the server first, so no new request registers work, then drain the runtime.
//! Orchestrators send SIGTERM and wait a grace period before SIGKILL; keep the drain's
//! grace inside it.
//!
//! ```no_run
//! use std::time::Duration;
//! use after_runtime::{AfterLayer, AfterRuntime};
//! use axum::{routing::get, Router};
//!
//! async fn shutdown_signal() {
//!     let ctrl_c = async {
//!         tokio::signal::ctrl_c().await.expect("install the Ctrl-C handler");
//!     };
//!     #[cfg(unix)]
//!     let terminate = async {
//!         tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
//!             .expect("install the SIGTERM handler")
//!             .recv()
//!             .await;
//!     };
//!     #[cfg(not(unix))]
//!     let terminate = std::future::pending::<()>();
//!     tokio::select! {
//!         () = ctrl_c => {}
//!         _ = terminate => {}
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let runtime = AfterRuntime::builder().build();
//! let app = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(AfterLayer::new(runtime.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // 1. Stop taking requests and finish the ones in flight.
//! axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
//! // 2. Let their after work finish; cancel what is left after 20 s.
//! let report = runtime.shutdown(Duration::from_secs(20)).await;
//! if !report.unfinished.is_empty() {
//!     tracing::error!(%report, "after tasks cancelled at shutdown");
//! }
//! # Ok(()) }
//! ```
//!
//! Tasks still waiting when the deadline passes are dropped unrun and running ones are
//! cancelled at their next `.await`; each is counted, logged, and listed in the
//! [`ShutdownReport`]. A task that blocks a thread without awaiting cannot be cancelled:
//! keep blocking work in `spawn_blocking`.
//!
//! # Where tasks run
//!
//! By default each task runs on the tokio runtime that served its request, beside
//! the connections. That is the cheapest choice for after work that mostly waits (a
//! database row, an HTTP call) and the default for that reason: starting a task
//! there costs no cross-thread wake-up, and measured over loopback, tasks that only
//! wait do not delay other responses. Work that spends CPU (rendering an e-mail,
//! hashing, serialising) is different: a tokio task runs each poll to completion,
//! so a millisecond of CPU holds a worker the connections need. On a 2-core server
//! under a load whose every request left 1 ms of CPU as after work, unrelated
//! requests answered over a hundred times slower than with a no-op task (the README's
//! performance table has the figures).
//!
//! [`Builder::dedicated_threads`] runs the tasks on threads of their own, in a tokio
//! runtime the `AfterRuntime` starts and owns. On Linux they run under the
//! `SCHED_IDLE` policy ([`ThreadPriority::Idle`], the default; a nice value or the
//! inherited priority are the alternatives), so the OS gives the request path the
//! CPU first, and the same load left unrelated requests' p50 and p99 at or below
//! those of a no-op task. The price: under a load that keeps every core busy, after
//! work waits for idle CPU (the task timeout still applies, and `max_pending`
//! bounds what waits); a task's start is a wake-up on another thread; the threads
//! exist while the runtime does. [`shutdown`](AfterRuntime::shutdown) stops and
//! joins them once it has drained, and dropping the last handle stops them too.
//! Elsewhere than Linux the priority setting does nothing. Priorities are set with
//! the `thread-priority` crate, a safe API over `pthread_setschedparam` and
//! `setpriority`, so this crate needs no `unsafe` code.
//!
//! A resource made on the serving runtime (a `sqlx` pool, a `reqwest` client, a
//! hyper connection) works from the dedicated threads: tokio I/O stays registered
//! with the reactor of the runtime that created it, which goes on driving it, at
//! the cost of a wake-up across runtimes per readiness event. So it stops working
//! once the serving runtime is gone, and timers or sockets a task creates belong to
//! the dedicated runtime and end with it.
//!
//! [`Builder::handle`] runs the tasks on a runtime the application already has
//! instead; it keeps that runtime running until the `AfterRuntime` has shut down.
//!
//! ```
//! use std::time::Duration;
//! use after_runtime::{AfterLayer, AfterRuntime, ThreadPriority};
//! use axum::{routing::get, Router};
//!
//! # #[tokio::main] async fn main() {
//! let runtime = AfterRuntime::builder()
//!     .dedicated_threads(1)
//!     .thread_priority(ThreadPriority::Idle) // the default
//!     .thread_name("after-mail")
//!     .build();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(AfterLayer::new(runtime.clone()));
//! # drop(app);
//! // ... serve; then drain, which also joins the thread:
//! runtime.shutdown(Duration::from_secs(30)).await;
//! # }
//! ```
//!
//! # Where `after()` works
//!
//! [`after()`](fn@after) finds its request through a task-local that [`AfterLayer`]
//! sets around the inner service's future, so it works in the handler, in helpers the
//! handler awaits, and in middleware inside the layer; and, inside a running after
//! task, it registers a nested task that starts at once. Work spawned with
//! `tokio::spawn` is another task and sees no request: there `after()` returns
//! [`AfterErrorKind::NoScope`], as it does in middleware added with `.layer()` after
//! `AfterLayer` (the last `.layer()` call is the outermost, so that middleware runs
//! outside the request scope). `after!` blocks do not depend on the task-local: they
//! carry their request's context.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod context;
mod error;
mod executor;
mod job;
pub mod layer;
mod log;
mod macros;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod outcome;
mod request;
mod runtime;
mod scope;
mod stats;
mod task;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{Builder, OverloadPolicy, ThreadPriority};
pub use context::{Cookies, Headers};
pub use cookie::Cookie;
pub use error::{AfterError, AfterErrorKind};
pub use layer::AfterLayer;
pub use outcome::{Delivery, Outcome};
pub use runtime::AfterRuntime;
pub use scope::{after, after_with, outcome};
pub use stats::{ShutdownReport, Stats, TaskStats, UnfinishedTask};
pub use task::{Location, TaskKey, TaskOptions, TaskOutput};

/// Lets an async axum handler register work with `after! { ... }` that runs after its
/// response has been sent.
///
/// Each `after!` block in the handler's body becomes a task, registered each time
/// control reaches it: once per loop iteration, only in the `if` branch taken. It
/// only enqueues; the handler never waits. Without [`AfterLayer`] the handler's tasks
/// run on [`AfterRuntime::global`] once its future completes.
///
/// # Grammar
///
/// ```text
/// after! { statements }                    // captures are moved in, as with `async move`
/// after!(clone(a, b, ...) { statements })  // a, b, ... are cloned in first; the rest moved
/// after!(name = "welcome-mail", timeout = Duration::from_secs(5), clone(db) { statements })
/// ```
///
/// Options come before the block (or its capture list), each followed by a comma, in
/// any order, each at most once; both are [`TaskOptions`]:
///
/// - `name = "..."`, a string literal: the task's name in its log lines, its span,
///   the duration metric's `task` label, the shutdown report and
///   [`AfterRuntime::task_stats`].
/// - `timeout = <Duration>`, any expression, evaluated when the block registers:
///   replaces the runtime's [`task_timeout`](Builder::task_timeout) for this task.
///
/// The block may end in `()` or `Result<(), E>` with `E: Display`; an `Err` is logged
/// and counted, never seen by the client.
///
/// A block may use `?` without ending in `Ok(())`. It then returns
/// `Result<(), Box<dyn Error + Send + Sync>>`, `Ok(())` once its statements have run,
/// so `?` accepts any error, as in a `main` that returns `Box<dyn Error>`. So does a
/// block with `?` that ends in a plain `Ok(())` or in a `()` value (`log(n)`, an `if`
/// without `else`). One that ends in a `Result` value keeps its error type:
///
/// ```text
/// after! { let n = parse(s)?; audit(n).await?; }            // Box<dyn Error + Send + Sync>
/// after! { let n = parse(s)?; log(n) }                      // Box<dyn Error + Send + Sync>
/// after! { let n = parse(s)?; audit(n).await }              // audit's error type
/// after! { audit(parse(s)?).await?; Ok::<(), MyError>(()) } // MyError
/// ```
///
/// A `?` in a closure or an async block inside the block belongs to that closure or
/// block. [`after()`](fn@after) is a plain function, so its async block gets no such
/// help: end it in `Ok::<(), YourError>(())`.
///
/// Inside a block, `headers` (a [`Headers`], deref to `http::HeaderMap`) and `cookies`
/// (a [`Cookies`]) are the request's, captured when it arrived and shared by all its
/// tasks. They are bound only when the block mentions them, and only when the
/// handler does not bind that name itself: as a parameter, or in any pattern of its
/// body outside the block (`let`, `let else`, closure parameters, `for`, `if let`,
/// `while let`, `match` arms, tuple and struct patterns), in an enclosing `after!`
/// block, or in another macro's input around the block (a `tokio::select!` arm).
/// Then the name is yours, resolved as Rust resolves it: your variable where it is in
/// scope, an unknown name where it is not; rename your variable if the block means
/// the request's. A binding inside the block itself shadows the request's value from
/// that point on. Inside a running block, another `after!` (or
/// [`after()`](fn@after)) registers a nested task that starts at once.
///
/// # Where `after!` may appear
///
/// | place | rewritten? |
/// |---|---|
/// | statements, expressions, nested blocks, `if` / `match` arms, loops, `let else` | yes |
/// | closures and async blocks, including `move` ones that outlive the handler (`tokio::spawn(async move { after! { .. } })`) | yes; `move` ones get their own clone of the request context |
/// | other macros' tokens (`tokio::select!` arms) | yes, by tokens; the host macro decides whether an expression may stand there |
/// | nested `fn` items | no: they cannot see the request; `#[with_after]` reports a compile error there that says to use [`after()`](fn@after) |
///
/// Paths ending in `::after!` (`after_runtime::after!`, or the crate re-exported under
/// another name, with `#[with_after(crate = "path")]`) are recognised too.
///
/// # How it works
///
/// The attribute adds one hidden first extractor (axum runs body extractors last, so
/// `Json` and friends still work), leaving 15 of axum's 16 extractor places to you. The
/// hidden names use mixed-site hygiene, so your code cannot name them. Each block
/// becomes a closure the runtime calls with the request's context; its `file:line`
/// is recorded for logs and shutdown reports. `tests/golden/*.expanded.rs` in the
/// `after-macros` crate show full expansions: of a handler, and of closures and async
/// blocks.
///
/// # With other attributes
///
/// - `#[with_after]` must be above `#[axum::debug_handler]`: then the hidden extractor
///   is checked like any other. Below it, `debug_handler` copies the body out of the
///   attribute's reach; `#[with_after]` then reports one error that says to move it
///   above (it reads the order from the source file, as no attribute can see the
///   ones above it).
/// - `#[tracing::instrument]` works on either side. Above `#[with_after]` its span
///   records your arguments only; below, it also records the hidden extractor.
///
/// ```
/// use after_runtime::{after, with_after};
/// use axum::{extract::{Json, State}, http::StatusCode};
///
/// #[derive(Clone)]
/// struct Db;
/// impl Db {
///     async fn insert(&self, _item: &str) -> Result<u64, StatusCode> { Ok(7) }
///     async fn audit(&self, _id: u64, _agent: &str) -> Result<(), std::io::Error> { Ok(()) }
/// }
///
/// #[with_after]
/// async fn create(State(db): State<Db>, Json(item): Json<String>) -> Result<String, StatusCode> {
///     let id = db.insert(&item).await?;
///     after!(clone(db) {
///         let agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("unknown");
///         db.audit(id, agent).await?;
///     });
///     Ok(format!("created {id}"))
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::post(create)).with_state(Db);
/// ```
///
/// Misuse is a compile error at your code:
///
/// ```compile_fail
/// use after_runtime::with_after;
///
/// #[with_after]
/// fn not_async() {} // error: `#[with_after]` requires an `async fn`
/// ```
pub use after_macros::with_after;

/// The README's Rust code blocks, compiled (and run, unless marked `no_run`) as
/// doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[derive(Debug)]
pub struct ReadmeDoctests;
