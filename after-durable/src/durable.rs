//! [`Durable`]: the handle to the job database that the layer, `enqueue` and the
//! workers share, with the per-process counts and the cluster's view.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::config::{Config, OnPersistFailure, Synchronous};
use crate::counts::{Counters, Counts, StatusCounts, bump};
use crate::error::DurableError;
use crate::release;
use crate::store::{self, Db, JobInfo, PendingJob};
use crate::worker::WorkersBuilder;

/// The job database and this process's counts. Cheap to clone.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// use std::time::Duration;
/// let durable = after_durable::Durable::builder()
///     .hold(Duration::from_secs(10))
///     .open("sqlite::memory:")
///     .await?;
/// assert_eq!(durable.counts().registered, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Durable {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    /// Wakes this process's workers when a held job is released, so that they do
    /// not wait for their next poll.
    pub(crate) wake: Arc<Notify>,
    /// Hands ids to the task that releases many requests' jobs in one statement.
    pub(crate) releases: mpsc::UnboundedSender<release::Batch>,
    /// Writes and releases started outside a request's future (its drop guard).
    pub(crate) background: TaskTracker,
}

/// Settings for [`Durable::builder`]; `open` connects and runs the migrations.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// use std::time::Duration;
/// use after_durable::{Durable, OnPersistFailure, Synchronous};
/// let durable = Durable::builder()
///     .hold(Duration::from_secs(30))
///     .poll_interval(Duration::from_millis(100))
///     .heartbeat(Duration::from_secs(10))
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(2))
///     .on_persist_failure(OnPersistFailure::KeepResponse)
///     .open("sqlite::memory:")
///     .await?;
/// # let _ = durable;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct DurableBuilder {
    config: Config,
}

impl DurableBuilder {
    /// How long a request's jobs wait after their write for the response to finish
    /// (default 30 s). Normally they are released as soon as it has; the hold only
    /// matters when the process dies in between, and then it is how late they run.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Durable::builder().hold(Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn hold(mut self, hold: Duration) -> Self {
        self.config.hold = hold;
        self
    }
    /// How often idle workers look for runnable jobs (default 200 ms). A release in
    /// the same process wakes them at once; jobs released by another process, held
    /// jobs whose hold expired and retries wait for the next poll.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Durable::builder().poll_interval(Duration::from_millis(50));
    /// # let _ = b;
    /// ```
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }
    /// How often workers tell the database they are alive (default 30 s, at least
    /// 1 s). Jobs of a worker silent for `missed_heartbeats` (default 2) intervals are
    /// taken back and run again by another worker.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Durable::builder().heartbeat(Duration::from_secs(1));
    /// # let _ = b;
    /// ```
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every.max(Duration::from_secs(1));
        self
    }
    /// How many heartbeats a worker may miss before its jobs are taken back (at
    /// least 2).
    ///
    /// ```
    /// let b = after_durable::Durable::builder().missed_heartbeats(3);
    /// # let _ = b;
    /// ```
    pub fn missed_heartbeats(mut self, missed: u32) -> Self {
        self.config.missed_heartbeats = missed.max(2);
        self
    }
    /// SQLite's `synchronous` on every pooled connection (default `Normal`).
    ///
    /// ```
    /// let b = after_durable::Durable::builder().synchronous(after_durable::Synchronous::Full);
    /// # let _ = b;
    /// ```
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.config.synchronous = synchronous;
        self
    }
    /// How long a write waits for SQLite's lock before it fails (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Durable::builder().busy_timeout(Duration::from_millis(500));
    /// # let _ = b;
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.config.busy_timeout = timeout;
        self
    }
    /// The pool's size (default 8).
    ///
    /// ```
    /// let b = after_durable::Durable::builder().max_connections(4);
    /// # let _ = b;
    /// ```
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.config.max_connections = connections.max(1);
        self
    }
    /// What the client gets when its request's jobs cannot be written (default
    /// `503`).
    ///
    /// ```
    /// let b = after_durable::Durable::builder().on_persist_failure(after_durable::OnPersistFailure::KeepResponse);
    /// # let _ = b;
    /// ```
    pub fn on_persist_failure(mut self, policy: OnPersistFailure) -> Self {
        self.config.on_persist_failure = policy;
        self
    }
    /// Opens the database read-only and runs no migrations: for dashboards, and
    /// to see what a failing database does to requests.
    ///
    /// ```
    /// let b = after_durable::Durable::builder().read_only(true);
    /// # let _ = b;
    /// ```
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }
    /// Connects to a SQLite URL (`sqlite:jobs.db`, `sqlite::memory:`), creating the
    /// file if missing, and runs apalis's migrations.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// # let _ = durable; Ok(()) }
    /// ```
    pub async fn open(self, url: &str) -> Result<Durable, DurableError> {
        let db = store::open(url, &self.config).await?;
        let counters = Arc::new(Counters::default());
        let wake = Arc::new(Notify::new());
        let releases = release::spawn(db.clone(), Arc::clone(&counters), Arc::clone(&wake));
        Ok(Durable {
            inner: Arc::new(Inner {
                db,
                config: self.config,
                counters,
                wake,
                releases,
                background: TaskTracker::new(),
            }),
        })
    }
}

impl Durable {
    /// Starts the settings; see [`DurableBuilder`].
    ///
    /// ```
    /// let builder = after_durable::Durable::builder();
    /// # let _ = builder;
    /// ```
    pub fn builder() -> DurableBuilder {
        DurableBuilder::default()
    }

    /// The SQLite pool, for the application's own queries and transactions
    /// (`enqueue` takes one of its transactions).
    ///
    /// # Panics
    ///
    /// If the database is PostgreSQL: use `pg_pool` there.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(durable.pool()).await?;
    /// assert_eq!(one, 1);
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &SqlitePool {
        match &self.inner.db {
            Db::Sqlite(pool) => pool,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => panic!("Durable::pool on a PostgreSQL database: use pg_pool"),
        }
    }

    /// The PostgreSQL pool, if the database is PostgreSQL (`enqueue_pg` takes one of
    /// its transactions).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert!(durable.pg_pool().is_none());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.inner.db {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

    /// Starts configuring this process's workers.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let workers = durable.workers().concurrency(4);
    /// # let _ = workers; Ok(()) }
    /// ```
    pub fn workers(&self) -> WorkersBuilder {
        WorkersBuilder::new(self.clone())
    }

    /// This process's counts.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let c = durable.counts();
    /// assert_eq!(c.registered, c.persisted + c.persist_failed);
    /// # Ok(()) }
    /// ```
    pub fn counts(&self) -> Counts {
        self.inner.counters.snapshot()
    }

    /// How many jobs the database holds in each status, across all processes.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert_eq!(durable.status_counts().await?.total(), 0);
    /// # Ok(()) }
    /// ```
    pub async fn status_counts(&self) -> Result<StatusCounts, DurableError> {
        match &self.inner.db {
            Db::Sqlite(pool) => store::status_counts(pool)
                .await
                .map_err(DurableError::database),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => crate::pg::status_counts(pool)
                .await
                .map_err(DurableError::database),
        }
    }

    /// The first `limit` jobs by id (oldest first), every status.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert!(durable.jobs(10).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn jobs(&self, limit: u32) -> Result<Vec<JobInfo>, DurableError> {
        store::list(&self.inner.db, false, limit)
            .await
            .map_err(DurableError::database)
    }

    /// Dead jobs (out of attempts), oldest first, with their last error.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert!(durable.dead_jobs(10).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn dead_jobs(&self, limit: u32) -> Result<Vec<JobInfo>, DurableError> {
        store::list(&self.inner.db, true, limit)
            .await
            .map_err(DurableError::database)
    }

    /// Gives a dead job a fresh set of attempts, runnable now. `false` if no dead job
    /// has that id.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert!(!durable.requeue("01JZZZZZZZZZZZZZZZZZZZZZZZ").await?);
    /// # Ok(()) }
    /// ```
    pub async fn requeue(&self, id: &str) -> Result<bool, DurableError> {
        let requeued = store::requeue(&self.inner.db, id)
            .await
            .map_err(DurableError::database)?;
        self.inner.wake.notify_waiters();
        Ok(requeued)
    }

    /// Waits (up to `grace`) for request writes that were moved off a dropped
    /// request, then closes the pool. Call it last, after the workers' shutdown.
    /// `true` if every such write finished.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// assert!(durable.close(std::time::Duration::from_secs(1)).await);
    /// # Ok(()) }
    /// ```
    pub async fn close(&self, grace: Duration) -> bool {
        self.inner.background.close();
        let finished = tokio::time::timeout(grace, self.inner.background.wait())
            .await
            .is_ok();
        self.inner.db.close().await;
        finished
    }

    /// Writes a request's jobs in one transaction, held (`hold` = `true`) or runnable
    /// at once, and counts the outcome. Returns the ids of the rows written.
    pub(crate) async fn write_batch(
        &self,
        jobs: &[PendingJob],
        hold: bool,
    ) -> Result<Vec<String>, DurableError> {
        let counters = &self.inner.counters;
        let at = store::run_at(if hold {
            self.inner.config.hold
        } else {
            Duration::ZERO
        });
        let result = match &self.inner.db {
            Db::Sqlite(pool) => insert_all(pool, jobs, at).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => insert_all(pool, jobs, at).await,
        };
        match result {
            Ok((written, duplicates)) => {
                bump(&counters.persisted, jobs.len() as u64);
                bump(&counters.duplicates, duplicates.len() as u64);
                for job in &duplicates {
                    store::log_duplicate(job);
                }
                if !hold {
                    self.inner.wake.notify_waiters();
                }
                Ok(written)
            }
            Err(error) => {
                bump(&counters.persist_failed, jobs.len() as u64);
                let names: Vec<&str> = jobs.iter().map(|j| j.name).collect();
                tracing::error!(%error, jobs = ?names, "after_durable.persist_failed: the request's jobs were not written");
                Err(error)
            }
        }
    }

    /// Makes held jobs runnable now and wakes this process's workers; returns once
    /// the statement that released them has run.
    pub(crate) async fn release(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let (done, released) = oneshot::channel();
        let batch = release::Batch {
            ids: ids.to_vec(),
            done,
        };
        if self.inner.releases.send(batch).is_err() || released.await.is_err() {
            release::release_now(&self.inner.db, &self.inner.counters, &self.inner.wake, ids).await;
        }
    }
}

/// A job database's insert of one job, for [`insert_all`].
trait InsertJob: sqlx::Database {
    fn insert<'c>(
        conn: &'c mut Self::Connection,
        job: &'c PendingJob,
        run_at: i64,
    ) -> impl Future<Output = Result<bool, DurableError>> + Send + 'c;
}

impl InsertJob for sqlx::Sqlite {
    fn insert<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        job: &'c PendingJob,
        run_at: i64,
    ) -> impl Future<Output = Result<bool, DurableError>> + Send + 'c {
        store::insert(conn, job, run_at)
    }
}

#[cfg(feature = "postgres")]
impl InsertJob for sqlx::Postgres {
    fn insert<'c>(
        conn: &'c mut sqlx::PgConnection,
        job: &'c PendingJob,
        run_at: i64,
    ) -> impl Future<Output = Result<bool, DurableError>> + Send + 'c {
        crate::pg::insert(conn, job, run_at)
    }
}

/// Writes `jobs` in one transaction on `pool`, due at `run_at`: the ids of the rows
/// written, and the jobs that wrote none (their idempotency key was taken).
async fn insert_all<'a, DB: InsertJob>(
    pool: &sqlx::Pool<DB>,
    jobs: &'a [PendingJob],
    run_at: i64,
) -> Result<(Vec<String>, Vec<&'a PendingJob>), DurableError> {
    let mut tx = pool.begin().await.map_err(DurableError::database)?;
    let mut written = Vec::with_capacity(jobs.len());
    let mut duplicates = Vec::new();
    for job in jobs {
        if DB::insert(&mut tx, job, run_at).await? {
            written.push(job.id.to_string());
        } else {
            duplicates.push(job);
        }
    }
    tx.commit().await.map_err(DurableError::database)?;
    Ok((written, duplicates))
}
