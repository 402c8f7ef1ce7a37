//! This process's workers: they claim runnable jobs through apalis's queries, run
//! them, and record each end in the job's row (done, retry after the backoff, dead).
//!
//! The loop is ours, on apalis's storage and queries, rather than apalis's
//! `Worker`: in apalis 1.0 that worker's poll timer is not re-armed (a job that
//! becomes runnable later waits for an unrelated event), its batched lock and ack
//! events can land late and overwrite a finished job's status, stopping it can wedge
//! a SQLite connection, and a job that returns "retry after" stays locked forever.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apalis_core::backend::WorkerFilter;
use apalis_core::worker::context::WorkerContext;
use apalis_sqlite::queries;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::counts::bump;
use crate::durable::Durable;
use crate::error::{DurableError, DurableErrorKind};
use crate::job::{Backoff, Job, JobContext, JobError};
use crate::store::{self, Db};

type Run = BoxFuture<'static, Result<(), JobError>>;

/// A registered job type, its type erased: data in, a run and its backoff out.
trait Runner: Send + Sync {
    fn prepare(&self, payload: &[u8], id: String, attempt: u32)
    -> Result<(Run, Backoff), JobError>;
}

struct TypedRunner<J: Job> {
    state: J::State,
}

impl<J: Job> Runner for TypedRunner<J> {
    fn prepare(
        &self,
        payload: &[u8],
        id: String,
        attempt: u32,
    ) -> Result<(Run, Backoff), JobError> {
        let job: J = serde_json::from_slice(payload)?;
        let backoff = job.options().backoff;
        let cx = JobContext {
            state: self.state.clone(),
            id,
            attempt,
        };
        Ok((job.run(cx).boxed(), backoff))
    }
}

/// Configures this process's workers; see [`Durable::workers`].
///
/// ```no_run
/// # use after_durable::{Durable, Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendReceipt;
/// # impl Job for SendReceipt { const NAME: &'static str = "send-receipt"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// let durable = Durable::builder().open("sqlite:jobs.db").await?;
/// let workers = durable
///     .workers()
///     .name("web-1")
///     .concurrency(8)
///     .job::<SendReceipt>(())
///     .start()
///     .await?;
/// // ... serve, then stop HTTP, then `after_runtime`'s shutdown, then:
/// let report = workers.shutdown(std::time::Duration::from_secs(20)).await;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[must_use]
pub struct WorkersBuilder {
    durable: Durable,
    concurrency: usize,
    name: Option<String>,
    runners: Vec<(&'static str, Arc<dyn Runner>)>,
}

impl fmt::Debug for WorkersBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.runners.iter().map(|(n, _)| *n).collect();
        f.debug_struct("WorkersBuilder")
            .field("concurrency", &self.concurrency)
            .field("name", &self.name)
            .field("jobs", &names)
            .finish()
    }
}

impl WorkersBuilder {
    pub(crate) fn new(durable: Durable) -> Self {
        WorkersBuilder {
            durable,
            concurrency: 4,
            name: None,
            runners: Vec::new(),
        }
    }
    /// How many jobs this process runs at once (default 4, at least 1).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let w = d.workers().concurrency(16);
    /// # let _ = w; Ok(()) }
    /// ```
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }
    /// A name for this process's workers (default: `$HOSTNAME`, else `worker`).
    /// The process id and a random suffix are appended, so a process restarted at
    /// once under the same name is a new worker (apalis refuses a name whose last
    /// heartbeat is recent).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let w = d.workers().name("web-1");
    /// # let _ = w; Ok(()) }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Runs jobs of type `J` here, each run given a clone of `state`.
    ///
    /// ```
    /// # use after_durable::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { const NAME: &'static str = "ping"; type State = u32;
    /// #   async fn run(self, _: JobContext<u32>) -> Result<(), JobError> { Ok(()) } }
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let w = d.workers().job::<Ping>(7);
    /// # let _ = w; Ok(()) }
    /// ```
    pub fn job<J: Job>(mut self, state: J::State) -> Self {
        self.runners
            .push((J::NAME, Arc::new(TypedRunner::<J> { state })));
        self
    }
    /// Registers the workers with the database and starts polling.
    ///
    /// # Errors
    ///
    /// No job registered, one name registered twice, or the database failed.
    ///
    /// ```
    /// # use after_durable::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
    /// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let workers = d.workers().job::<Ping>(()).start().await?;
    /// assert!(workers.shutdown(std::time::Duration::from_secs(1)).await.unfinished.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<Workers, DurableError> {
        if self.runners.is_empty() {
            return Err(DurableError::new(
                DurableErrorKind::Config,
                "no job registered with the workers",
            ));
        }
        let base = self
            .name
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "worker".to_owned());
        let suffix = (ulid::Ulid::generate().random() & 0xff_ffff) as u32;
        let process = format!("{base}-{}-{suffix:06x}", std::process::id());
        let mut queues = Vec::new();
        let mut runners = HashMap::new();
        for (name, runner) in self.runners {
            if runners.insert(name, runner).is_some() {
                return Err(DurableError::new(
                    DurableErrorKind::Config,
                    format!("job {name:?} registered twice"),
                ));
            }
            queues.push(Queue::new(name, format!("{process}/{name}"), &self.durable));
        }
        for queue in &queues {
            register(&self.durable.inner.db, queue)
                .await
                .map_err(DurableError::database)?;
        }
        let shared = Arc::new(Shared {
            durable: self.durable,
            queues,
            runners,
            running: Mutex::new(HashMap::new()),
            runs: TaskTracker::new(),
            concurrency: self.concurrency,
        });
        shared.recover().await;
        let cancel = CancellationToken::new();
        let fetch = tokio::spawn(fetch_loop(Arc::clone(&shared), cancel.clone()));
        let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&shared), cancel.clone()));
        tracing::info!(worker = %process, concurrency = shared.concurrency, "after_durable.workers_started");
        Ok(Workers {
            shared,
            cancel,
            fetch,
            heartbeat,
            process,
        })
    }
}

/// One job type's apalis worker identity.
struct Queue {
    name: &'static str,
    worker: WorkerContext,
    config: apalis_sqlite::Config,
}

impl Queue {
    fn new(name: &'static str, worker: String, durable: &Durable) -> Self {
        let config = &durable.inner.config;
        Queue {
            name,
            worker: WorkerContext::new(&worker),
            config: apalis_sqlite::Config::default()
                .queue(name)
                .heartbeat_interval(config.heartbeat)
                .missed_heartbeats(config.missed_heartbeats as usize),
        }
    }
}

struct RunningJob {
    name: &'static str,
    worker: String,
    abort: Option<AbortHandle>,
}

struct Shared {
    durable: Durable,
    queues: Vec<Queue>,
    runners: HashMap<&'static str, Arc<dyn Runner>>,
    running: Mutex<HashMap<String, RunningJob>>,
    runs: TaskTracker,
    concurrency: usize,
}

impl Shared {
    /// Takes back jobs of workers (of any process) that stopped sending heartbeats.
    async fn recover(&self) {
        let dead_for = self.durable.inner.config.orphaned_after().as_secs() as i64;
        for queue in &self.queues {
            let filter = WorkerFilter::AllExcept(queue.worker.name().to_owned());
            let recovered = match &self.durable.inner.db {
                Db::Sqlite(pool) => {
                    queries::reenqueue_orphaned(pool, dead_for, queue.name, &filter).await
                }
                #[cfg(feature = "postgres")]
                Db::Postgres(pool) => {
                    crate::pg::recover(
                        pool,
                        queue.name,
                        queue.worker.name(),
                        self.durable.inner.config.orphaned_after(),
                    )
                    .await
                }
            };
            match recovered {
                Ok(0) => {}
                Ok(n) => {
                    bump(&self.durable.inner.counters.recovered, n);
                    tracing::warn!(
                        job = queue.name,
                        jobs = n,
                        "after_durable.recovered: jobs of a silent worker will run again"
                    );
                    self.durable.inner.wake.notify_waiters();
                }
                Err(error) => {
                    tracing::error!(%error, job = queue.name, "after_durable: recovering orphaned jobs failed")
                }
            }
        }
    }
}

async fn register(db: &Db, queue: &Queue) -> Result<(), sqlx::Error> {
    match db {
        Db::Sqlite(pool) => {
            queries::register_worker(pool, &queue.config, &queue.worker, "after-durable").await
        }
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            crate::pg::register_worker(pool, queue.worker.name(), queue.name).await
        }
    }
}

/// Claims up to `n` runnable jobs of `queue`: `(id, attempts so far, data)`.
async fn claim(
    db: &Db,
    queue: &Queue,
    n: usize,
) -> Result<Vec<(String, u32, Vec<u8>)>, DurableError> {
    match db {
        Db::Sqlite(pool) => {
            let config = queue.config.clone().batch_size(n);
            let tasks = queries::fetch_next(pool, &config, &queue.worker)
                .await
                .map_err(DurableError::database)?;
            Ok(tasks
                .into_iter()
                .filter_map(|task| {
                    let id = task.ctx().task_id()?.to_string();
                    let attempts = task.ctx().attempt() as u32;
                    Some((id, attempts, task.args))
                })
                .collect())
        }
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => crate::pg::fetch(pool, queue.worker.name(), queue.name, n)
            .await
            .map_err(DurableError::database),
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let every = shared.durable.inner.config.heartbeat;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for queue in &shared.queues {
            let db = &shared.durable.inner.db;
            let alive = match db {
                Db::Sqlite(pool) => queries::keep_alive(pool, &queue.config, &queue.worker).await,
                #[cfg(feature = "postgres")]
                Db::Postgres(pool) => crate::pg::keep_alive(pool, queue.worker.name()).await,
            };
            if let Err(error) = alive {
                tracing::error!(%error, worker = queue.worker.name(), "after_durable: heartbeat failed");
                // A worker row removed by hand: register again.
                let _ = register(db, queue).await;
            }
        }
        shared.recover().await;
    }
}

async fn fetch_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(shared.concurrency));
    let poll = shared.durable.inner.config.poll_interval;
    let mut start = 0;
    loop {
        let first = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        // Listen before fetching, so a release during the fetch is not missed.
        let woken = shared.durable.inner.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(permit);
        }
        let mut fetched = 0;
        let queues = shared.queues.len();
        for i in 0..queues {
            if permits.is_empty() {
                break;
            }
            let queue = &shared.queues[(start + i) % queues];
            match claim(&shared.durable.inner.db, queue, permits.len()).await {
                Ok(tasks) => {
                    for (id, attempts, payload) in tasks {
                        let Some(permit) = permits.pop() else { break };
                        let attempt = attempts + 1;
                        fetched += 1;
                        let shared2 = Arc::clone(&shared);
                        let worker = queue.worker.name().to_owned();
                        let name = queue.name;
                        shared.runs.spawn(async move {
                            run_one(&shared2, name, worker, id, attempt, payload).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => {
                    tracing::error!(%error, job = queue.name, "after_durable: fetching jobs failed");
                }
            }
        }
        start = start.wrapping_add(1);
        drop(permits);
        if fetched == 0 {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = &mut woken => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

enum Ending {
    Succeeded,
    Failed {
        error: String,
        backoff: Option<Backoff>,
    },
}

async fn run_one(
    shared: &Shared,
    name: &'static str,
    worker: String,
    id: String,
    attempt: u32,
    payload: Vec<u8>,
) {
    let counters = &shared.durable.inner.counters;
    let locked = match &shared.durable.inner.db {
        Db::Sqlite(pool) => queries::lock_tasks(pool, std::slice::from_ref(&id), &worker).await,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => crate::pg::lock(pool, &id, &worker).await,
    };
    match locked {
        Ok(1) => {}
        Ok(_) => return, // taken back meanwhile
        Err(error) => {
            tracing::error!(%error, job = name, %id, "after_durable: locking a claimed job failed; it is recovered after the heartbeat timeout");
            return;
        }
    }
    bump(&counters.started, 1);
    shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            id.clone(),
            RunningJob {
                name,
                worker: worker.clone(),
                abort: None,
            },
        );
    let runner = &shared.runners[name];
    let ending = match runner.prepare(&payload, id.clone(), attempt) {
        Err(error) => Ending::Failed {
            error: format!("the job's data does not deserialize: {error}"),
            backoff: None,
        },
        Ok((run, backoff)) => {
            // Its own task, so that a panic is caught and shutdown can cut it off.
            let handle = tokio::spawn(run);
            if let Some(entry) = shared
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&id)
            {
                entry.abort = Some(handle.abort_handle());
            }
            match handle.await {
                Ok(Ok(())) => Ending::Succeeded,
                Ok(Err(error)) => Ending::Failed {
                    error: error.to_string(),
                    backoff: Some(backoff),
                },
                Err(join) if join.is_panic() => Ending::Failed {
                    error: "the job panicked".to_owned(),
                    backoff: Some(backoff),
                },
                // Cut off by shutdown, which puts the job back.
                Err(_) => return,
            }
        }
    };
    shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    record(shared, name, &worker, &id, attempt, ending).await;
}

/// The one place a run's end is counted, logged and written to its row.
async fn record(shared: &Shared, name: &str, worker: &str, id: &str, attempt: u32, ending: Ending) {
    let counters = &shared.durable.inner.counters;
    let db = &shared.durable.inner.db;
    let written: Result<Option<String>, sqlx::Error> = match &ending {
        Ending::Succeeded => {
            bump(&counters.succeeded, 1);
            store::record_success(db, id, worker).await
        }
        Ending::Failed { error, backoff } => {
            bump(&counters.failed, 1);
            let kill = backoff.is_none();
            let next = store::run_at(backoff.map(|b| b.delay(attempt)).unwrap_or_default());
            store::record_failure(db, id, worker, kill, next, error).await
        }
    };
    let status: Option<String> = match written {
        Ok(status) => status,
        Err(error) => {
            tracing::error!(%error, job = name, %id, "after_durable: recording a run's end failed; the job is recovered after the heartbeat timeout");
            return;
        }
    };
    match (status.as_deref(), &ending) {
        (None, _) => {
            bump(&counters.ack_lost, 1);
            tracing::warn!(job = name, %id, attempt, "after_durable.ack_lost: the job was taken back from this worker meanwhile and runs again");
        }
        (Some("Done"), _) => tracing::debug!(job = name, %id, attempt, "after_durable.succeeded"),
        (Some("Killed"), Ending::Failed { error, .. }) => {
            bump(&counters.dead, 1);
            tracing::error!(job = name, %id, attempt, %error, "after_durable.dead: out of attempts; listed by dead_jobs, requeue to retry");
        }
        (Some(_), Ending::Failed { error, backoff }) => {
            bump(&counters.retried, 1);
            let wait = backoff.map(|b| b.delay(attempt)).unwrap_or_default();
            tracing::warn!(job = name, %id, attempt, %error, retry_in = ?wait, "after_durable.failed: retried after the backoff");
        }
        (Some(_), Ending::Succeeded) => {}
    }
}

/// This process's running workers; stop them with [`shutdown`](Workers::shutdown).
pub struct Workers {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    fetch: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    process: String,
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("name", &self.process)
            .field("concurrency", &self.shared.concurrency)
            .finish_non_exhaustive()
    }
}

/// Dropped without [`shutdown`](Workers::shutdown): the loops stop taking jobs;
/// running jobs go on, and a job left unrecorded is recovered after the heartbeat
/// timeout.
impl Drop for Workers {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A job cut off by a shutdown past its grace: put back, it runs again on a next
/// start (here or in another process).
///
/// ```
/// let u = after_durable::UnfinishedJob { id: "01J".into(), name: "send-receipt" };
/// assert_eq!(u.to_string(), "send-receipt 01J");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnfinishedJob {
    /// The job's id.
    pub id: String,
    /// Its [`Job::NAME`].
    pub name: &'static str,
}

impl fmt::Display for UnfinishedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.id)
    }
}

/// What [`Workers::shutdown`] left.
///
/// ```
/// let r = after_durable::WorkerReport::default();
/// assert_eq!(r.to_string(), "every running job finished");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerReport {
    /// Jobs still running at the deadline.
    pub unfinished: Vec<UnfinishedJob>,
}

impl fmt::Display for WorkerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unfinished.is_empty() {
            return f.write_str("every running job finished");
        }
        write!(f, "{} job(s) cut off, to run again:", self.unfinished.len())?;
        for job in &self.unfinished {
            write!(f, " {job};")?;
        }
        Ok(())
    }
}

impl Workers {
    /// The workers' name in the database (this process's part; each job type adds
    /// `/NAME`).
    ///
    /// ```
    /// # use after_durable::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
    /// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let w = d.workers().name("web-1").job::<Ping>(()).start().await?;
    /// assert!(w.name().starts_with("web-1-"));
    /// # w.shutdown(std::time::Duration::from_secs(1)).await; Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.process
    }

    /// Stops taking jobs, waits up to `grace` for the running ones, then cuts off
    /// the rest and puts them back (runnable at once, their cut-off run counted as
    /// an attempt). Call it after the HTTP server stopped and after
    /// `AfterRuntime::shutdown`, so that no release is still on its way.
    ///
    /// ```
    /// # use after_durable::{Job, JobContext, JobError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
    /// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let d = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let w = d.workers().job::<Ping>(()).start().await?;
    /// let report = w.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert!(report.unfinished.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(mut self, grace: Duration) -> WorkerReport {
        self.cancel.cancel();
        let _ = (&mut self.fetch).await;
        let _ = (&mut self.heartbeat).await;
        let shared = &self.shared;
        shared.runs.close();
        let mut report = WorkerReport::default();
        if tokio::time::timeout(grace, shared.runs.wait())
            .await
            .is_err()
        {
            let cut: Vec<(String, RunningJob)> = shared
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .collect();
            for (id, job) in cut {
                if let Some(abort) = &job.abort {
                    abort.abort();
                }
                let put_back = store::put_back(&shared.durable.inner.db, &id, &job.worker).await;
                bump(&shared.durable.inner.counters.interrupted, 1);
                match put_back {
                    Ok(_) => {
                        tracing::error!(job = job.name, %id, "after_durable.interrupted: cut off at the shutdown deadline; runs again on a next start")
                    }
                    Err(error) => {
                        tracing::error!(%error, job = job.name, %id, "after_durable.interrupted: cut off at the shutdown deadline; putting it back failed, it is recovered after the heartbeat timeout")
                    }
                }
                report.unfinished.push(UnfinishedJob { id, name: job.name });
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.runs.wait()).await;
        }
        report
    }
}
