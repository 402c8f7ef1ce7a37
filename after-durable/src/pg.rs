//! The PostgreSQL side, on apalis-postgres's schema (`apalis.jobs`,
//! `apalis.workers`) and its claim function `apalis.get_jobs` (`FOR UPDATE SKIP
//! LOCKED`): the same statements as the SQLite side, for workers on several
//! machines.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use crate::counts::StatusCounts;
use crate::error::DurableError;
use crate::store::{JobInfo, JobRow, PendingJob, job_info};

pub(crate) async fn open(url: &str, max_connections: u32) -> Result<PgPool, DurableError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(url)
        .await
        .map_err(DurableError::database)?;
    apalis_postgres::PostgresStorage::migrations()
        .run(&pool)
        .await
        .map_err(DurableError::database)?;
    Ok(pool)
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    job: &PendingJob,
    run_at: i64,
) -> Result<bool, DurableError> {
    let done = sqlx::query(
        "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
         priority, idempotency_key) VALUES ($1, $2, $3, 'Pending', 0, $4, to_timestamp($5), 0, $6) \
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
    )
    .bind(&job.payload)
    .bind(job.id.to_string())
    .bind(job.name)
    .bind(job.max_attempts as i32)
    .bind(run_at as f64)
    .bind(job.idempotency_key.as_deref())
    .execute(conn)
    .await
    .map_err(DurableError::database)?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn release(pool: &PgPool, ids: &[String]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET run_at = now() WHERE id = ANY($1) AND status = 'Pending' \
         AND lock_by IS NULL AND run_at > now()",
    )
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn existing(pool: &PgPool, ids: &[String]) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM apalis.jobs WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

pub(crate) async fn list(
    pool: &PgPool,
    only_dead: bool,
    limit: u32,
) -> Result<Vec<JobInfo>, sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(
        "SELECT id, job_type, status, attempts::bigint, max_attempts::bigint, \
         extract(epoch from run_at)::bigint, last_result #>> '{}', lock_by \
         FROM apalis.jobs WHERE ($1 = false OR status = 'Killed') ORDER BY id LIMIT $2",
    )
    .bind(only_dead)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(job_info).collect())
}

pub(crate) async fn status_counts(pool: &PgPool) -> Result<StatusCounts, sqlx::Error> {
    let rows = sqlx::query_as("SELECT status, COUNT(*) FROM apalis.jobs GROUP BY status")
        .fetch_all(pool)
        .await?;
    Ok(crate::store::tally(rows))
}

pub(crate) async fn requeue(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL, \
         lock_at = NULL, done_at = NULL WHERE id = $1 AND status = 'Killed'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn register_worker(
    pool: &PgPool,
    worker: &str,
    queue: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at) \
         VALUES ($1, $2, 'after-durable', '', now(), now()) \
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .bind(worker)
    .bind(queue)
    .execute(pool)
    .await?;
    Ok(())
}

/// A worker's heartbeat. A missing row is an error, as on SQLite, so that the
/// caller registers the worker again.
pub(crate) async fn keep_alive(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    let done = sqlx::query("UPDATE apalis.workers SET last_seen = now() WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// Takes back the jobs of workers of `queue` (other than `worker`) silent for
/// `dead_for`.
pub(crate) async fn recover(
    pool: &PgPool,
    queue: &str,
    worker: &str,
    dead_for: Duration,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, \
         attempts = attempts + 1, last_result = '\"re-enqueued: its worker stopped sending heartbeats\"' \
         WHERE status IN ('Running', 'Queued') AND job_type = $1 AND lock_by IN \
         (SELECT id FROM apalis.workers WHERE worker_type = $1 AND id <> $2 \
          AND last_seen < now() - make_interval(secs => $3))",
    )
    .bind(queue)
    .bind(worker)
    .bind(dead_for.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Claims up to `n` runnable jobs: `(id, attempts so far, data)`.
pub(crate) async fn fetch(
    pool: &PgPool,
    worker: &str,
    queue: &str,
    n: usize,
) -> Result<Vec<(String, u32, Vec<u8>)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, attempts, job FROM apalis.get_jobs($1, $2, $3)")
        .bind(worker)
        .bind(queue)
        .bind(n as i32)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), r.get::<i32, _>(1) as u32, r.get(2)))
        .collect())
}

pub(crate) async fn lock(pool: &PgPool, id: &str, worker: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Running', lock_at = now() \
         WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Pending', 'Failed')",
    )
    .bind(id)
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn record_success(
    pool: &PgPool,
    id: &str,
    worker: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE apalis.jobs SET status = 'Done', attempts = attempts + 1, done_at = now(), \
         last_result = NULL WHERE id = $1 AND lock_by = $2 AND status = 'Running' RETURNING status",
    )
    .bind(id)
    .bind(worker)
    .fetch_optional(pool)
    .await
}

pub(crate) async fn record_failure(
    pool: &PgPool,
    id: &str,
    worker: &str,
    kill: bool,
    next: i64,
    error: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE apalis.jobs SET attempts = attempts + 1, last_result = to_jsonb($5::text), \
         status = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN 'Killed' ELSE 'Failed' END, \
         run_at = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN run_at ELSE to_timestamp($4) END, \
         done_at = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN now() ELSE NULL END, \
         lock_by = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN lock_by ELSE NULL END, \
         lock_at = CASE WHEN $3 OR attempts + 1 >= max_attempts THEN lock_at ELSE NULL END \
         WHERE id = $1 AND lock_by = $2 AND status = 'Running' RETURNING status",
    )
    .bind(id)
    .bind(worker)
    .bind(kill)
    .bind(next as f64)
    .bind(error)
    .fetch_optional(pool)
    .await
}

pub(crate) async fn put_back(pool: &PgPool, id: &str, worker: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = attempts + 1, lock_by = NULL, \
         lock_at = NULL, run_at = now(), last_result = '\"cut off by shutdown\"' \
         WHERE id = $1 AND lock_by = $2 AND status = 'Running'",
    )
    .bind(id)
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
