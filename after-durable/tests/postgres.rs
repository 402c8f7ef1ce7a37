//! PostgreSQL with two worker processes (this test binary started again in worker
//! mode): 100 jobs each run exactly once and both processes get work; SIGKILL of the
//! process running a job and the other completes it.
//!
//! Needs the `postgres` feature and `DATABASE_URL=postgres://...` (`.ci/postgres`
//! starts a local cluster and prints it); without them it says so and passes.
#![cfg(all(feature = "postgres", unix))]

mod support;

use std::process::Stdio;
use std::time::Duration;

use after_durable::{Durable, Job, JobContext, JobError, enqueue_pg};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use support::eventually;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);
const WORKER_ENV: &str = "AFTER_DURABLE_PG_WORKER";

/// A job that records its run by the process that ran it.
#[derive(Serialize, Deserialize)]
struct Count {
    tag: String,
}

impl Job for Count {
    const NAME: &'static str = "pg-count";
    type State = PgPool;
    async fn run(self, cx: JobContext<PgPool>) -> Result<(), JobError> {
        // Long enough that both processes' workers are busy at once.
        tokio::time::sleep(Duration::from_millis(20)).await;
        sqlx::query("INSERT INTO durable_runs (tag, pid, phase) VALUES ($1, $2, 'end')")
            .bind(&self.tag)
            .bind(std::process::id() as i32)
            .execute(cx.state())
            .await?;
        Ok(())
    }
}

/// A job that records its start, then takes `ms`.
#[derive(Serialize, Deserialize)]
struct Slow {
    tag: String,
    ms: u64,
}

impl Job for Slow {
    const NAME: &'static str = "pg-slow";
    type State = PgPool;
    async fn run(self, cx: JobContext<PgPool>) -> Result<(), JobError> {
        for phase in ["start", "end"] {
            if phase == "end" {
                tokio::time::sleep(Duration::from_millis(self.ms)).await;
            }
            sqlx::query("INSERT INTO durable_runs (tag, pid, phase) VALUES ($1, $2, $3)")
                .bind(&self.tag)
                .bind(std::process::id() as i32)
                .bind(phase)
                .execute(cx.state())
                .await?;
        }
        Ok(())
    }
}

/// A job no test enqueues.
#[derive(Serialize, Deserialize)]
struct Never;

impl Job for Never {
    const NAME: &'static str = "pg-never";
    type State = ();
    async fn run(self, _: JobContext<()>) -> Result<(), JobError> {
        Ok(())
    }
}

fn database_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

async fn open(url: &str) -> Durable {
    Durable::builder()
        .poll_interval(Duration::from_millis(50))
        .heartbeat(Duration::from_secs(1))
        .open(url)
        .await
        .unwrap()
}

/// The worker mode: runs jobs until killed. Does nothing in a normal test run.
#[tokio::test]
async fn worker_process() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let url = database_url().expect("DATABASE_URL");
    let durable = open(&url).await;
    let pool = durable.pg_pool().unwrap().clone();
    let _workers = durable
        .workers()
        .name("pg-test")
        .concurrency(2)
        .job::<Count>(pool.clone())
        .job::<Slow>(pool)
        .start()
        .await
        .unwrap();
    println!("worker ready");
    std::future::pending::<()>().await;
}

async fn spawn_worker(url: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER_ENV, "1")
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("worker ready") {
                return;
            }
        }
        panic!("the worker process exited before it was ready");
    })
    .await
    .expect("the worker process is ready");
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn two_worker_processes_run_each_job_once_and_take_over_a_killed_ones_job() {
    let Some(url) = database_url() else {
        eprintln!(
            "SKIPPED: set DATABASE_URL=postgres://... (see .ci/postgres) to run the PostgreSQL test"
        );
        return;
    };
    let durable = open(&url).await;
    let pool = durable.pg_pool().unwrap().clone();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS durable_runs (tag TEXT NOT NULL, pid INTEGER NOT NULL, phase TEXT NOT NULL);
         DELETE FROM durable_runs;
         DELETE FROM apalis.jobs WHERE job_type IN ('pg-count', 'pg-slow');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut first = spawn_worker(&url).await;
    let mut second = spawn_worker(&url).await;

    // 100 jobs, committed at once.
    let mut tx = pool.begin().await.unwrap();
    for i in 0..100 {
        enqueue_pg(
            &mut tx,
            Count {
                tag: format!("c{i}"),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    eventually("100 jobs done", WAIT, || async {
        (durable.status_counts().await.unwrap().done == 100).then_some(())
    })
    .await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM durable_runs").await,
        100,
        "each ran once"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT tag) FROM durable_runs").await,
        100
    );
    let pids: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT pid FROM durable_runs ORDER BY pid")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = vec![first.id().unwrap() as i32, second.id().unwrap() as i32];
    expected.sort();
    assert_eq!(pids, expected, "both processes got work");

    // A 3 s job; kill whichever process started it.
    let mut tx = pool.begin().await.unwrap();
    enqueue_pg(
        &mut tx,
        Slow {
            tag: "slow".into(),
            ms: 3000,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let runner: i32 = eventually("the slow job started", WAIT, || async {
        sqlx::query_scalar("SELECT pid FROM durable_runs WHERE tag = 'slow' AND phase = 'start'")
            .fetch_optional(&pool)
            .await
            .unwrap()
    })
    .await;
    let (killed, survivor) = if runner == first.id().unwrap() as i32 {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    killed.start_kill().unwrap();
    killed.wait().await.unwrap();
    let survivor_pid = survivor.id().unwrap() as i32;
    eventually("the other process completed the slow job", WAIT, || async {
        let s = durable.status_counts().await.unwrap();
        (s.done == 101).then_some(())
    })
    .await;
    let ends: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM durable_runs WHERE tag = 'slow' AND phase = 'end'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(ends, vec![survivor_pid], "completed by the survivor only");
    let jobs = durable.jobs(1000).await.unwrap();
    let slow = jobs.iter().find(|j| j.name == "pg-slow").unwrap();
    assert_eq!((slow.status.as_str(), slow.attempts), ("done", 2));
    survivor.start_kill().unwrap();
    durable.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_worker_whose_row_was_removed_registers_again() {
    let Some(url) = database_url() else {
        eprintln!("SKIPPED: set DATABASE_URL=postgres://... (see .ci/postgres)");
        return;
    };
    let durable = open(&url).await;
    let pool = durable.pg_pool().unwrap().clone();
    // A job type of its own, never enqueued: this worker must not take the other
    // test's jobs, whose runs it counts by process.
    let workers = durable
        .workers()
        .name("pg-row")
        .job::<Never>(())
        .start()
        .await
        .unwrap();
    let rows = format!("{}/%", workers.name());
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM apalis.workers WHERE id LIKE $1")
            .bind(&rows)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1, "registered when started");
    sqlx::query("DELETE FROM apalis.workers WHERE id LIKE $1")
        .bind(&rows)
        .execute(&pool)
        .await
        .unwrap();
    // Its next heartbeat (every second here) finds no row, and registers it again.
    eventually("the worker registered again", WAIT, || async {
        (count().await == 1).then_some(())
    })
    .await;
    workers.shutdown(Duration::from_secs(5)).await;
}
