//! A request's durable scope: the jobs `after_durable` registered and the ids
//! `enqueue` wrote held, found through a task-local that `DurableLayer` sets.

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::SqliteConnection;

use crate::counts::bump;
use crate::durable::Durable;
use crate::error::{DurableError, DurableErrorKind};
use crate::job::Job;
use crate::store::{self, PendingJob};

tokio::task_local! {
    /// Set by `DurableLayer` around the inner service's future.
    pub(crate) static REQUEST: Arc<RequestJobs>;
}

#[derive(Debug)]
pub(crate) struct RequestJobs {
    pub(crate) durable: Durable,
    pub(crate) jobs: Mutex<Vec<PendingJob>>,
    /// Rows `enqueue` wrote held in the handler's own transaction.
    pub(crate) held: Mutex<Vec<String>>,
}

impl RequestJobs {
    pub(crate) fn new(durable: Durable) -> Self {
        RequestJobs {
            durable,
            jobs: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        }
    }
    pub(crate) fn take(&self) -> (Vec<PendingJob>, Vec<String>) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        (jobs, held)
    }
}

fn pending<J: Job>(job: &J) -> Result<PendingJob, DurableError> {
    let options = job.options();
    let payload =
        serde_json::to_vec(job).map_err(|e| DurableError::new(DurableErrorKind::Serialize, e))?;
    Ok(PendingJob {
        id: ulid::Ulid::generate(),
        name: J::NAME,
        payload,
        max_attempts: options.max_attempts,
        idempotency_key: options.idempotency_key,
    })
}

/// Registers a job to be written with the request's response and run once that
/// response is finished, like `after()` but surviving a crash.
///
/// It only serializes the job and appends it to the request's list: nothing is
/// awaited. [`DurableLayer`](crate::DurableLayer) writes the list in one transaction
/// after the handler returns and before the response goes out.
///
/// # Errors
///
/// [`DurableErrorKind::NoScope`] outside a request served under `DurableLayer`
/// (there, use [`enqueue`] with a transaction), and
/// [`DurableErrorKind::Serialize`] if the job does not serialize.
///
/// ```
/// use after_durable::{after_durable, Durable, DurableLayer, Job, JobContext, JobError};
/// use after_runtime::{AfterLayer, AfterRuntime};
/// use axum::{routing::post, Router};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Welcome { email: String }
/// impl Job for Welcome {
///     const NAME: &'static str = "welcome";
///     type State = ();
///     async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) }
/// }
///
/// async fn sign_up() -> &'static str {
///     after_durable(Welcome { email: "a@example.com".into() }).expect("inside DurableLayer");
///     "welcome"
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// let durable = Durable::builder().open("sqlite::memory:").await?;
/// let runtime = AfterRuntime::builder().build();
/// let app: Router = Router::new()
///     .route("/sign-up", post(sign_up))
///     .layer(DurableLayer::new(durable.clone())) // inside ...
///     .layer(AfterLayer::new(runtime));          // ... AfterLayer
/// # let _ = app; Ok(()) }
/// ```
pub fn after_durable<J: Job>(job: J) -> Result<(), DurableError> {
    let scope = REQUEST
        .try_with(Arc::clone)
        .map_err(|_| DurableError::no_scope())?;
    let pending = pending(&job)?;
    bump(&scope.durable.inner.counters.registered, 1);
    scope
        .jobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(pending);
    Ok(())
}

/// What [`enqueue`] wrote.
///
/// ```
/// let e = after_durable::Enqueued::Duplicate;
/// assert!(e.is_duplicate());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row, with its id; it exists once the transaction commits.
    New(String),
    /// A row with the same idempotency key exists: nothing was written.
    Duplicate,
}

impl Enqueued {
    /// Whether the idempotency key absorbed this job.
    ///
    /// ```
    /// assert!(!after_durable::Enqueued::New("01J".into()).is_duplicate());
    /// ```
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Enqueued::Duplicate)
    }
}

/// Writes a job in the caller's own transaction (the outbox form): it commits with
/// the caller's rows, and a rollback leaves no job. Workers cannot see it before the
/// commit.
///
/// Inside a request served under [`DurableLayer`](crate::DurableLayer) the job is
/// written held and released once the response is finished, as with
/// [`after_durable`]; elsewhere it is runnable when the transaction commits.
///
/// # Errors
///
/// A serialization or database error; the transaction is then the caller's to roll
/// back.
///
/// ```
/// # use after_durable::{enqueue, Durable, Enqueued, Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let durable = Durable::builder().open("sqlite::memory:").await?;
/// let mut tx = durable.pool().begin().await?;
/// let written = enqueue(&mut tx, Ping).await?;
/// tx.rollback().await?; // no job
/// assert!(matches!(written, Enqueued::New(_)));
/// assert_eq!(durable.status_counts().await?.total(), 0);
/// # Ok(()) }
/// ```
pub async fn enqueue<J: Job>(tx: &mut SqliteConnection, job: J) -> Result<Enqueued, DurableError> {
    let pending = pending(&job)?;
    let (scope, at) = outbox_scope();
    let inserted = store::insert(tx, &pending, at).await?;
    Ok(written(scope, pending, inserted))
}

/// [`enqueue`] in a PostgreSQL transaction, for a [`Durable`] opened on a
/// `postgres://` URL.
///
/// # Errors
///
/// A serialization or database error; the transaction is then the caller's to roll
/// back.
///
/// ```no_run
/// # use after_durable::{enqueue_pg, Durable, Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let durable = Durable::builder().open("postgres://postgres@localhost/app").await?;
/// let mut tx = durable.pg_pool().expect("PostgreSQL").begin().await?;
/// enqueue_pg(&mut tx, Ping).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub async fn enqueue_pg<J: Job>(
    tx: &mut sqlx::PgConnection,
    job: J,
) -> Result<Enqueued, DurableError> {
    let pending = pending(&job)?;
    let (scope, at) = outbox_scope();
    let inserted = crate::pg::insert(tx, &pending, at).await?;
    Ok(written(scope, pending, inserted))
}

/// The request an outbox insert belongs to, if any, and its row's run time: held
/// until the request's response is finished, or runnable now outside a request.
fn outbox_scope() -> (Option<Arc<RequestJobs>>, i64) {
    let scope = REQUEST.try_with(Arc::clone).ok();
    let hold = scope.as_ref().map_or(std::time::Duration::ZERO, |scope| {
        scope.durable.inner.config.hold
    });
    (scope, store::run_at(hold))
}

/// What an outbox insert reports, and the held id the request will release.
fn written(scope: Option<Arc<RequestJobs>>, pending: PendingJob, inserted: bool) -> Enqueued {
    if !inserted {
        store::log_duplicate(&pending);
        return Enqueued::Duplicate;
    }
    let id = pending.id.to_string();
    if let Some(scope) = scope {
        scope
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.clone());
    }
    Enqueued::New(id)
}
