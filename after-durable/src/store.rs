//! The SQLite side: the pool we open (WAL, `synchronous`, busy timeout), apalis's
//! migrations, and the statements on apalis's `Jobs` table that apalis has no call
//! for (hold release, backoff reschedule, dead-job requeue, listing).

// Each statement matches on `Db` and hands the PostgreSQL arm to its twin in
// `pg.rs`; without the `postgres` feature the match has one arm left.
#![cfg_attr(
    not(feature = "postgres"),
    allow(clippy::infallible_destructuring_match)
)]

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_sqlite::SqliteStorage;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};

use crate::config::{Config, Synchronous};
use crate::error::DurableError;

/// The job database: SQLite, or PostgreSQL with the `postgres` feature.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl Db {
    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// The per-status counts from `(status, count)` rows, as both backends' `GROUP BY
/// status` answers them.
pub(crate) fn tally(rows: Vec<(String, i64)>) -> crate::counts::StatusCounts {
    let mut counts = crate::counts::StatusCounts::default();
    for (apalis, n) in rows {
        let n = n as u64;
        match status_name(&apalis) {
            "pending" => counts.pending += n,
            "queued" => counts.queued += n,
            "running" => counts.running += n,
            "done" => counts.done += n,
            "failed" => counts.failed += n,
            "dead" => counts.dead += n,
            _ => {}
        }
    }
    counts
}

/// How many jobs the SQLite database holds in each status.
pub(crate) async fn status_counts(
    pool: &SqlitePool,
) -> Result<crate::counts::StatusCounts, sqlx::Error> {
    let rows = sqlx::query_as("SELECT status, COUNT(*) FROM Jobs GROUP BY status")
        .fetch_all(pool)
        .await?;
    Ok(tally(rows))
}

/// Logs a registration that wrote no row: its idempotency key was taken.
pub(crate) fn log_duplicate(job: &PendingJob) {
    tracing::info!(
        job = job.name,
        key = job.idempotency_key.as_deref().unwrap_or_default(),
        "after_durable.duplicate: a job with this idempotency key exists; no new row"
    );
}

/// A job serialized at registration, waiting to be written.
#[derive(Debug, Clone)]
pub(crate) struct PendingJob {
    pub(crate) id: ulid::Ulid,
    pub(crate) name: &'static str,
    pub(crate) payload: Vec<u8>,
    pub(crate) max_attempts: u32,
    pub(crate) idempotency_key: Option<String>,
}

pub(crate) async fn open(url: &str, config: &Config) -> Result<Db, DurableError> {
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Db::Postgres(
            crate::pg::open(url, config.max_connections).await?,
        ));
    }
    open_sqlite(url, config).await.map(Db::Sqlite)
}

async fn open_sqlite(url: &str, config: &Config) -> Result<SqlitePool, DurableError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(DurableError::database)?
        .create_if_missing(!config.read_only)
        .read_only(config.read_only)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match config.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(config.busy_timeout)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(config.max_connections)
        .connect_with(options)
        .await
        .map_err(DurableError::database)?;
    // apalis's `setup()` would also set `synchronous = OFF` on one pooled
    // connection: only its migrations are run.
    if !config.read_only {
        SqliteStorage::migrations()
            .run(&pool)
            .await
            .map_err(DurableError::database)?;
    }
    Ok(pool)
}

/// Seconds since the epoch, rounded up: a run time never comes before `now + after`.
pub(crate) fn run_at(after: Duration) -> i64 {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + after;
    (at.as_secs() + u64::from(at.subsec_nanos() > 0)) as i64
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Writes one job through apalis's own insert; `false` when its idempotency key
/// already had a row (apalis's insert then does nothing and says nothing).
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    job: &PendingJob,
    run_at: i64,
) -> Result<bool, DurableError> {
    let mut builder = TaskBuilder::new(job.payload.clone())
        .task_id(TaskId::from_ulid(job.id))
        .max_attempts(job.max_attempts as usize)
        .run_at_timestamp(run_at.max(0) as u64);
    if let Some(key) = &job.idempotency_key {
        builder = builder.idempotency_key(key);
    }
    let task = builder.build();
    apalis_sqlite::queries::push_tasks(&mut *conn, job.name, std::slice::from_ref(&task))
        .await
        .map_err(DurableError::database)?;
    let changed: i64 = sqlx::query_scalar("SELECT changes()")
        .fetch_one(&mut *conn)
        .await
        .map_err(DurableError::database)?;
    Ok(changed > 0)
}

/// Records a run that succeeded, if this worker still holds the job; returns the
/// row's new status, `None` if the job was taken back meanwhile.
pub(crate) async fn record_success(
    db: &Db,
    id: &str,
    worker: &str,
) -> Result<Option<String>, sqlx::Error> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => return crate::pg::record_success(pool, id, worker).await,
    };
    sqlx::query_scalar(
        "UPDATE Jobs SET status = 'Done', attempts = attempts + 1, done_at = ?3, \
         last_result = NULL WHERE id = ?1 AND lock_by = ?2 AND status = 'Running' \
         RETURNING status",
    )
    .bind(id)
    .bind(worker)
    .bind(now_secs())
    .fetch_optional(pool)
    .await
}

/// Records a run that failed, if this worker still holds the job: dead when `kill`
/// or out of attempts, else failed and due again at `next`. Returns the row's new
/// status, `None` if the job was taken back meanwhile.
pub(crate) async fn record_failure(
    db: &Db,
    id: &str,
    worker: &str,
    kill: bool,
    next: i64,
    error: &str,
) -> Result<Option<String>, sqlx::Error> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            return crate::pg::record_failure(pool, id, worker, kill, next, error).await;
        }
    };
    sqlx::query_scalar(
        "UPDATE Jobs SET attempts = attempts + 1, last_result = ?5, \
         status = CASE WHEN ?3 OR attempts + 1 >= max_attempts THEN 'Killed' ELSE 'Failed' END, \
         run_at = CASE WHEN ?3 OR attempts + 1 >= max_attempts THEN run_at ELSE ?4 END, \
         done_at = CASE WHEN ?3 OR attempts + 1 >= max_attempts THEN ?6 ELSE NULL END, \
         lock_by = CASE WHEN ?3 OR attempts + 1 >= max_attempts THEN lock_by ELSE NULL END, \
         lock_at = CASE WHEN ?3 OR attempts + 1 >= max_attempts THEN lock_at ELSE NULL END \
         WHERE id = ?1 AND lock_by = ?2 AND status = 'Running' RETURNING status",
    )
    .bind(id)
    .bind(worker)
    .bind(kill)
    .bind(next)
    .bind(error)
    .bind(now_secs())
    .fetch_optional(pool)
    .await
}

/// Puts a job cut off by shutdown back, runnable now, its run counted; returns the
/// rows changed (0 if this worker no longer held it).
pub(crate) async fn put_back(db: &Db, id: &str, worker: &str) -> Result<u64, sqlx::Error> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => return crate::pg::put_back(pool, id, worker).await,
    };
    let done = sqlx::query(
        "UPDATE Jobs SET status = 'Pending', attempts = attempts + 1, lock_by = NULL, \
         lock_at = NULL, run_at = ?3, last_result = 'cut off by shutdown' \
         WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'",
    )
    .bind(id)
    .bind(worker)
    .bind(now_secs())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Makes a dead job runnable now with its attempts reset; whether it was dead.
pub(crate) async fn requeue(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => return crate::pg::requeue(pool, id).await,
    };
    let done = sqlx::query(
        "UPDATE Jobs SET status = 'Pending', attempts = 0, run_at = ?2, lock_by = NULL, \
         lock_at = NULL, done_at = NULL WHERE id = ?1 AND status = 'Killed'",
    )
    .bind(id)
    .bind(now_secs())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes held jobs runnable now. Jobs a worker already took (hold expired) or that
/// were never committed (a rolled-back outbox) are left alone.
pub(crate) async fn release(db: &Db, ids: &[String]) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => return crate::pg::release(pool, ids).await,
    };
    let ids = serde_json::to_string(ids).unwrap_or_default();
    let done = sqlx::query(
        "UPDATE Jobs SET run_at = ?2 WHERE id IN (SELECT value FROM json_each(?1)) \
         AND status = 'Pending' AND lock_by IS NULL AND run_at > ?2",
    )
    .bind(ids)
    .bind(now_secs())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One row of the `Jobs` table, as [`Durable::jobs`](crate::Durable::jobs) lists it.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
/// let jobs: Vec<after_durable::JobInfo> = durable.jobs(100).await?;
/// assert!(jobs.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobInfo {
    /// The job's id (a ULID).
    pub id: String,
    /// Its [`Job::NAME`](crate::Job::NAME).
    pub name: String,
    /// `pending`, `queued`, `running`, `done`, `failed` (waiting to retry) or `dead`.
    pub status: String,
    /// Runs so far (a run cut off by a crash counts).
    pub attempts: u32,
    /// Runs allowed.
    pub max_attempts: u32,
    /// When it may run next, in seconds since the epoch.
    pub run_at: i64,
    /// The last failure's message, if any.
    pub last_error: Option<String>,
    /// The worker that holds or last held it.
    pub worker: Option<String>,
}

pub(crate) fn status_name(apalis: &str) -> &'static str {
    match apalis {
        "Pending" => "pending",
        "Queued" => "queued",
        "Running" => "running",
        "Done" => "done",
        "Failed" => "failed",
        "Killed" => "dead",
        _ => "unknown",
    }
}

/// Ids among `ids` that have a row.
pub(crate) async fn existing(db: &Db, ids: &[String]) -> Vec<String> {
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar::<_, String>(
            "SELECT id FROM Jobs WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(ids).unwrap_or_default())
        .fetch_all(pool)
        .await
        .unwrap_or_default(),
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => crate::pg::existing(pool, ids).await,
    }
}

pub(crate) async fn list(
    db: &Db,
    only_dead: bool,
    limit: u32,
) -> Result<Vec<JobInfo>, sqlx::Error> {
    let pool = match db {
        Db::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => return crate::pg::list(pool, only_dead, limit).await,
    };
    let rows = sqlx::query_as(
        "SELECT id, job_type, status, attempts, max_attempts, run_at, last_result, lock_by \
         FROM Jobs WHERE (?1 = 0 OR status = 'Killed') ORDER BY id LIMIT ?2",
    )
    .bind(only_dead)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(job_info).collect())
}

/// A row of a job listing, in the same columns and types on both backends: id,
/// name, status, attempts, max attempts, run time (Unix seconds), last error, worker.
pub(crate) type JobRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

/// A listed job, from its row.
pub(crate) fn job_info(
    (id, name, status, attempts, max_attempts, run_at, last_error, worker): JobRow,
) -> JobInfo {
    JobInfo {
        id,
        name,
        status: status_name(&status).to_owned(),
        attempts: attempts as u32,
        max_attempts: max_attempts as u32,
        run_at,
        last_error,
        worker,
    }
}
