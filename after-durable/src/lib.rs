//! Durable after-work for axum: a job registered in a handler is written to a job
//! database before the response goes out and run by a worker once the response is
//! finished, in this process or in another one. It survives a crash, a `kill -9` or
//! a deploy, which `after_runtime`'s in-memory tasks do not.
//!
//! The job engine is [apalis](https://docs.rs/apalis) 1.0 on SQLite (embedded,
//! nothing to install; PostgreSQL with the `postgres` feature): its schema,
//! migrations, insert and claim queries. This crate
//! adds the hand-off from a request, the outbox form, and the worker loop around
//! apalis's queries (see [Workers](#workers)).
//!
//! ```
//! use std::time::Duration;
//! use after_durable::{after_durable, Durable, DurableLayer, Job, JobContext, JobError, JobOptions};
//! use after_runtime::{AfterLayer, AfterRuntime};
//! use axum::{routing::post, Router};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendReceipt { order_id: i64 }
//!
//! impl Job for SendReceipt {
//!     const NAME: &'static str = "send-receipt"; // stable: rows are found by it
//!     type State = ();
//!     async fn run(self, cx: JobContext<()>) -> Result<(), JobError> {
//!         println!("receipt {} (attempt {})", self.order_id, cx.attempt());
//!         Ok(())
//!     }
//!     fn options(&self) -> JobOptions {
//!         JobOptions::new().idempotency_key(format!("receipt-{}", self.order_id))
//!     }
//! }
//!
//! async fn create_order() -> &'static str {
//!     after_durable(SendReceipt { order_id: 7 }).expect("under DurableLayer");
//!     "created"
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let durable = Durable::builder().hold(Duration::from_secs(30)).open("sqlite::memory:").await?;
//! let workers = durable.workers().concurrency(4).job::<SendReceipt>(()).start().await?;
//! let runtime = AfterRuntime::builder().build();
//! let app: Router = Router::new()
//!     .route("/orders", post(create_order))
//!     .layer(DurableLayer::new(durable.clone())) // inside ...
//!     .layer(AfterLayer::new(runtime.clone()));  // ... AfterLayer
//! // axum::serve(listener, app).with_graceful_shutdown(signal).await?;
//! runtime.shutdown(Duration::from_secs(20)).await;      // releases still due
//! let report = workers.shutdown(Duration::from_secs(20)).await; // running jobs
//! durable.close(Duration::from_secs(5)).await;
//! # let _ = (app, report); Ok(()) }
//! ```
//!
//! # `after!` or `after_durable`
//!
//! Use `after!` / `after_runtime::after` for work whose loss in a crash is
//! acceptable (a log line, a cache warm-up, a metric): it costs nothing durable and
//! starts within microseconds. Use [`after_durable`] (or [`enqueue`]) for work that
//! must happen (a receipt, a webhook, a charge): it costs one SQLite write
//! transaction per request that registers jobs (under a millisecond at p50 on
//! loopback, `benches/handoff.rs`), and its data must serialize.
//!
//! # How a request's jobs travel
//!
//! 1. [`after_durable`] serializes the job and appends it to the request's list: O(1),
//!    nothing awaited.
//! 2. When the handler returns, [`DurableLayer`] writes the list in one transaction,
//!    each row's run time `hold` from now (default 30 s), then lets the response go.
//!    If the write fails, the client gets a 503 or the handler's response
//!    ([`OnPersistFailure`]); either way it is counted and logged.
//! 3. Once the response is finished (an `after_runtime` task of the request), the
//!    rows are made runnable now, and this process's workers are woken.
//! 4. A worker claims the row, runs the job, and records the end: done; failed and
//!    rescheduled after the [`Backoff`] (stored in the row, so a restart keeps it);
//!    or dead after `max_attempts`, listed by [`Durable::dead_jobs`] and
//!    requeueable with [`Durable::requeue`].
//!
//! Like `after!`, a request's jobs are written whatever its response: a 4xx or 5xx,
//! a redirect. Register them where the work is decided (after the order is
//! written), not before a `?` that may fail.
//!
//! [`enqueue`] is the outbox form: the job is written in the handler's own sqlx
//! transaction, committed or rolled back with the handler's rows, invisible to
//! workers until the commit. Inside a request under `DurableLayer` it is held and
//! released like `after_durable`'s jobs; elsewhere it is runnable at the commit.
//!
//! # At least once, never exactly once
//!
//! A job runs at least once once its row is committed; it may run twice. Make `run`
//! idempotent (an upsert, a unique key where the side effect lands), and give jobs
//! that a client may cause twice (a retried POST) an
//! [idempotency key](JobOptions::idempotency_key): a second registration with the
//! same key writes no row, is counted in [`Counts::duplicates`], and `enqueue`
//! returns [`Enqueued::Duplicate`].
//!
//! # Crash windows
//!
//! | the process dies | what happens to the job |
//! |---|---|
//! | before the commit | nothing was written; the client gets an error or a reset |
//! | after the commit, before the response head | it runs when its hold expires; the client saw no success and may retry: the idempotency key absorbs the duplicate |
//! | after the response, before the release | it runs when its hold expires (late, not lost) |
//! | after the release, before a worker claims it | the next poll of any worker runs it |
//! | while the job runs | it runs again, once the dead worker has missed its heartbeats (`heartbeat` x `missed_heartbeats`, default 60 s): twice in all |
//! | after the side effect, before its end is recorded | it runs again: handlers must be idempotent |
//! | a power loss | with WAL and `synchronous = NORMAL` the last commits may roll back; [`Synchronous::Full`] keeps them at one fsync per commit |
//! | the client goes away before the handler returns | the jobs it registered are written by a drop guard on a task of its own, runnable at once |
//! | SIGTERM | stop HTTP, drain `after_runtime` (releases), then [`Workers::shutdown`]: running jobs finish within the grace; past it they are put back, listed in the [`WorkerReport`], and run on a next start |
//!
//! # Workers
//!
//! [`Durable::workers`] starts this process's workers: a loop that claims runnable
//! rows with apalis's queries (`fetch_next`, `lock_tasks`, heartbeats,
//! orphan recovery), up to `concurrency` at a time. Its name gets the process id
//! and a random suffix, because apalis refuses a worker name whose heartbeat is
//! recent, so a process restarted at once under the same name would otherwise run
//! nothing. The loop is ours rather than apalis's `Worker`, whose 1.0 release does
//! not re-arm its poll timer (a job that becomes runnable later waits for an
//! unrelated event), can let a late lock or ack event overwrite a finished job's
//! status, can wedge a SQLite connection when stopped, and never re-fetches a job
//! that asked to be retried.
//!
//! On other machines: run the same binary (or one that registers the same job
//! types) with workers and without HTTP, on the same database; the example's
//! `durable worker` does this. With SQLite that means one machine's disk (several
//! processes on it). For several machines, turn on the `postgres` feature and open
//! a `postgres://` URL: the same API on apalis-postgres's schema, jobs claimed with
//! `FOR UPDATE SKIP LOCKED` (apalis's `get_jobs`), [`enqueue_pg`] for the outbox
//! form and `Durable::pg_pool` for the pool. apalis-postgres's migrations create
//! the `hstore` extension, which takes a superuser (or an existing extension).
//!
//! sqlx's query macros inside apalis's crates read `DATABASE_URL` at compile time
//! when it is set and then query that database: build with `SQLX_OFFLINE=true` if
//! your environment sets it.
//!
//! # Counts
//!
//! [`Durable::counts`] counts this process: `registered == persisted +
//! persist_failed`, and for its workers `started`, `succeeded`, `failed ==
//! retried + dead`, `recovered`, `interrupted`. [`Durable::status_counts`] asks the
//! database, which answers for every process sharing it.
//!
//! # The pool
//!
//! [`DurableBuilder::open`] opens the SQLite pool itself: WAL, `synchronous`
//! NORMAL (or FULL), a busy timeout, foreign keys; then runs apalis's migrations.
//! apalis's own `setup()` is never called: it sets `synchronous = OFF` on a pooled
//! connection.
//!
//! # Minimum supported Rust version
//!
//! 1.94, which sqlx 0.9 needs. `after-runtime` itself keeps its own, lower one and
//! gains no dependency from this crate.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(feature = "sqlite"))]
compile_error!("after-durable needs its `sqlite` feature (on by default), also with `postgres`");

mod config;
mod counts;
mod durable;
mod error;
mod job;
mod layer;
#[cfg(feature = "postgres")]
mod pg;
mod release;
mod scope;
mod store;
mod worker;

pub use config::{OnPersistFailure, Synchronous};
pub use counts::{Counts, StatusCounts};
pub use durable::{Durable, DurableBuilder};
pub use error::{DurableError, DurableErrorKind};
pub use job::{Backoff, Job, JobContext, JobError, JobOptions};
pub use layer::{DurableLayer, DurableService, ResponseFuture};
#[cfg(feature = "postgres")]
pub use scope::enqueue_pg;
pub use scope::{Enqueued, after_durable, enqueue};
pub use store::JobInfo;
pub use worker::{UnfinishedJob, WorkerReport, Workers, WorkersBuilder};
