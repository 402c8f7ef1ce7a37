//! The crash windows, on the example's own binary (`examples/durable.rs`) started as
//! a child process: killed (SIGKILL), aborted, or stopped (SIGTERM) at each point of
//! the hand-off, then restarted on the same SQLite file.
//!
//! The binary is the one `cargo test` builds before it runs any test
//! (`target/<profile>/examples/durable`). Run alone, build it first:
//! `cargo build -p after-durable --example durable && cargo test -p after-durable --test crash_windows`.
#![cfg(unix)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use http::Version;
use sqlx::SqlitePool;
use support::{Http, TempDb, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const ORDER: &str = r#"{"email":"a@example.com","item":"tea","quantity":2}"#;

fn example_binary() -> PathBuf {
    // target/<profile>/deps/crash_windows-<hash> -> target/<profile>/examples/durable
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("durable");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/durable.rs");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified());
    let edited = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .unwrap();
    match built {
        Ok(built) if built >= edited => binary,
        _ => panic!(
            "{} is missing or older than its source: run `cargo build -p after-durable --example durable` (a plain `cargo test` builds it)",
            binary.display()
        ),
    }
}

struct Example {
    child: Child,
    url: String,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Example {
    async fn start(db: &TempDb, env: &[(&str, &str)]) -> Example {
        Example::spawn(db, env, &[], "listening on http://").await
    }

    async fn start_worker(db: &TempDb, env: &[(&str, &str)]) -> Example {
        Example::spawn(db, env, &["worker"], "worker only").await
    }

    async fn spawn(db: &TempDb, env: &[(&str, &str)], args: &[&str], ready: &str) -> Example {
        let mut command = Command::new(example_binary());
        command
            .args(args)
            .env("PORT", "0")
            .env("DATABASE_URL", db.url())
            .env("AFTER_DURABLE_POLL_MS", "50")
            .env("AFTER_DURABLE_HEARTBEAT_SECS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the example");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut example = Example {
            child,
            url: String::new(),
            lines,
            seen: Vec::new(),
        };
        let line = example.wait_for_line(ready).await;
        if let Some(addr) = line.strip_prefix("listening on ") {
            example.url = addr.to_owned();
        }
        example
    }

    async fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "the example exited before printing {needle:?}: {:?}",
                    self.seen
                ),
                Err(_) => panic!("no {needle:?} within {WAIT:?}: {:?}", self.seen),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the example exits")
            .unwrap()
            .code()
    }

    /// Everything it printed until it exited.
    async fn output(&mut self) -> Vec<String> {
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    async fn order(&self, query: &str) -> hyper::Response<hyper::body::Incoming> {
        Http::new(Version::HTTP_11)
            .send("POST", &format!("{}/orders{query}", self.url), ORDER)
            .await
            .unwrap()
    }
}

async fn pool(db: &TempDb) -> SqlitePool {
    SqlitePool::connect(&db.url()).await.unwrap()
}

async fn count(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}

async fn job(pool: &SqlitePool) -> Option<(String, i64)> {
    sqlx::query_as("SELECT status, attempts FROM Jobs")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

/// Starts the example with `env`, places an order, and waits until its job runs.
async fn start_with_a_running_job(db: &TempDb, env: &[(&str, &str)]) -> (Example, SqlitePool) {
    let web = Example::start(db, env).await;
    assert_eq!(web.order("").await.status(), 201);
    let pool = pool(db).await;
    eventually("the job started", WAIT, || async {
        (count(&pool, "SELECT COUNT(*) FROM job_runs").await == 1).then_some(())
    })
    .await;
    (web, pool)
}

async fn wait_done(pool: &SqlitePool) -> (String, i64) {
    eventually("the receipt job is done", WAIT, || async {
        job(pool).await.filter(|(status, _)| status == "Done")
    })
    .await
}

#[tokio::test]
async fn sigkill_after_the_response_before_the_release_runs_the_job_once_after_restart() {
    let db = TempDb::new("kill-before-release");
    let hold = Duration::from_secs(3);
    let env = [("AFTER_DURABLE_HOLD_SECS", "3")];
    let mut first = Example::start(&db, &env).await;
    // The body streams for 30 s: the response is not finished, so not released.
    let response = first.order("?stream_ms=30000").await;
    let head_at = Instant::now();
    assert_eq!(response.status(), 201);
    let pool = pool(&db).await;
    assert_eq!(job(&pool).await.unwrap().0, "Pending");
    first.signal("KILL");
    first.exit_code().await;
    drop(response);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM job_runs").await, 0);

    let mut second = Example::start(&db, &env).await;
    let (_, attempts) = wait_done(&pool).await;
    let done_at = head_at.elapsed();
    assert!(
        done_at + Duration::from_millis(200) >= hold,
        "ran before its hold expired: {done_at:?}"
    );
    // Whole-second run times, one poll, and the restart.
    assert!(
        done_at <= hold + Duration::from_secs(2),
        "ran {done_at:?} after the response"
    );
    assert_eq!(attempts, 1);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM job_runs").await,
        1,
        "exactly once"
    );
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM job_runs").await,
        1,
        "exactly once"
    );
}

#[tokio::test]
async fn abort_after_the_commit_before_the_response_runs_the_job_once_after_restart() {
    let db = TempDb::new("abort-after-commit");
    let mut first = Example::start(
        &db,
        &[
            ("AFTER_DURABLE_HOLD_SECS", "2"),
            ("AFTER_DURABLE_ABORT_AFTER_COMMIT", "1"),
        ],
    )
    .await;
    let result = Http::new(Version::HTTP_11)
        .send("POST", &format!("{}/orders", first.url), ORDER)
        .await;
    assert!(result.is_err(), "the client got no response");
    assert_ne!(first.exit_code().await, Some(0), "aborted");
    let pool = pool(&db).await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM orders").await,
        1,
        "committed"
    );

    let mut second = Example::start(&db, &[("AFTER_DURABLE_HOLD_SECS", "2")]).await;
    let (_, attempts) = wait_done(&pool).await;
    assert_eq!(attempts, 1);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM job_runs").await, 1);
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigkill_mid_job_reruns_it_after_restart() {
    let db = TempDb::new("kill-mid-job");
    let (mut first, pool) =
        start_with_a_running_job(&db, &[("AFTER_DURABLE_JOB_MS", "20000")]).await;
    first.signal("KILL");
    first.exit_code().await;

    // A new process, a new worker name: the killed worker's job is taken back
    // once its heartbeats are missed (2 x 1 s here).
    let mut second = Example::start(&db, &[]).await;
    let (_, attempts) = wait_done(&pool).await;
    assert_eq!(attempts, 2, "the cut-off run counts");
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM job_runs").await,
        2,
        "at least once: twice in all"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM receipts").await,
        1,
        "the side effect is idempotent"
    );
    let (status, jobs) = Http::new(Version::HTTP_2)
        .text("GET", &format!("{}/jobs", second.url), "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs[0]["status"], "done");
    assert_eq!(jobs[0]["attempts"], 2);
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
    let output = second.output().await;
    let counts = output
        .iter()
        .find(|l| l.starts_with("counts: "))
        .expect("counts printed");
    assert!(counts.contains(r#""recovered":1"#), "{counts}");
}

#[tokio::test]
async fn an_immediate_restart_under_the_same_worker_name_still_processes_jobs() {
    let db = TempDb::new("same-name");
    let env = [
        ("AFTER_DURABLE_WORKER_NAME", "web-1"),
        ("AFTER_DURABLE_HEARTBEAT_SECS", "30"),
    ];
    let mut first = Example::start(&db, &env).await;
    let pool = pool(&db).await;
    assert_eq!(first.order("").await.status(), 201);
    wait_done(&pool).await;
    first.signal("TERM");
    assert_eq!(first.exit_code().await, Some(0));

    let mut second = Example::start(&db, &env).await;
    assert_eq!(second.order("").await.status(), 201);
    eventually("the second order's job is done", WAIT, || async {
        (count(&pool, "SELECT COUNT(*) FROM Jobs WHERE status = 'Done'").await == 2).then_some(())
    })
    .await;
    let workers: Vec<String> = sqlx::query_scalar("SELECT DISTINCT lock_by FROM Jobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(workers.len(), 2, "two worker names: {workers:?}");
    assert!(workers.iter().all(|w| w.starts_with("web-1-")));
    second.signal("TERM");
    assert_eq!(second.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigterm_during_a_job_lets_it_finish_and_exits_0() {
    let db = TempDb::new("term-mid-job");
    let (mut web, pool) = start_with_a_running_job(
        &db,
        &[
            ("AFTER_DURABLE_JOB_MS", "1500"),
            ("AFTER_DURABLE_GRACE_SECS", "20"),
        ],
    )
    .await;
    web.signal("TERM");
    assert_eq!(web.exit_code().await, Some(0));
    assert_eq!(job(&pool).await.unwrap(), ("Done".to_owned(), 1));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM receipts").await, 1);
    let output = web.output().await;
    assert!(
        output
            .iter()
            .any(|l| l == "workers: every running job finished"),
        "{output:?}"
    );
}

#[tokio::test]
async fn a_job_longer_than_the_grace_is_listed_and_rerun_on_the_next_start() {
    let db = TempDb::new("term-past-grace");
    let (mut web, pool) = start_with_a_running_job(
        &db,
        &[
            ("AFTER_DURABLE_JOB_MS", "60000"),
            ("AFTER_DURABLE_GRACE_SECS", "1"),
        ],
    )
    .await;
    let id: String = sqlx::query_scalar("SELECT id FROM Jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    web.signal("TERM");
    assert_eq!(web.exit_code().await, Some(0));
    let output = web.output().await;
    let report = output
        .iter()
        .find(|l| l.starts_with("workers: "))
        .expect("a report");
    assert!(report.contains(&format!("send-receipt {id}")), "{report}");
    assert_eq!(job(&pool).await.unwrap().0, "Pending", "put back");

    let mut next = Example::start(&db, &[]).await;
    wait_done(&pool).await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM job_runs").await, 2);
    next.signal("TERM");
    assert_eq!(next.exit_code().await, Some(0));
}

#[tokio::test]
async fn a_worker_only_process_runs_the_jobs_a_web_process_without_workers_writes() {
    let db = TempDb::new("worker-only");
    let mut web = Example::start(&db, &[("AFTER_DURABLE_WORKERS", "0")]).await;
    let mut worker = Example::start_worker(&db, &[]).await;
    for _ in 0..5 {
        assert_eq!(web.order("").await.status(), 201);
    }
    let pool = pool(&db).await;
    eventually("five jobs done", WAIT, || async {
        (count(&pool, "SELECT COUNT(*) FROM Jobs WHERE status = 'Done'").await == 5).then_some(())
    })
    .await;
    let pids: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT pid FROM job_runs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        pids,
        vec![i64::from(worker.pid())],
        "only the worker process ran jobs"
    );
    web.signal("TERM");
    worker.signal("TERM");
    assert_eq!(web.exit_code().await, Some(0));
    assert_eq!(worker.exit_code().await, Some(0));
}
