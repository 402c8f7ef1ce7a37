//! The hand-off inside one process, over loopback: when rows appear, when jobs
//! start, what a dropped request, the outbox, idempotency keys and retries do, and
//! whether the counts add up against the database.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use after_durable::{
    Durable, DurableErrorKind, DurableLayer, Enqueued, Workers, after_durable, enqueue,
};
use after_runtime::{AfterLayer, AfterRuntime};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::routing::post;
use http::Version;
use http_body_util::BodyExt;
use serde::Deserialize;
use support::{Http, Probe, Runs, TempDb, TestServer, eventually};

const WAIT: Duration = Duration::from_secs(20);

async fn open(db: &TempDb) -> Durable {
    Durable::builder()
        // Long enough that a hold expiry never explains a run in these tests.
        .hold(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(50))
        .heartbeat(Duration::from_secs(1))
        .open(&db.url())
        .await
        .unwrap()
}

async fn workers(durable: &Durable, runs: &Runs, concurrency: usize) -> Workers {
    durable
        .workers()
        .name("test")
        .concurrency(concurrency)
        .job::<Probe>(runs.clone())
        .start()
        .await
        .unwrap()
}

#[derive(Deserialize)]
struct Register {
    tag: String,
    #[serde(default = "one")]
    n: u32,
    stream_ms: Option<u64>,
    key: Option<String>,
    fail_times: Option<u32>,
}

fn one() -> u32 {
    1
}

/// When the last chunk of a streamed body was handed to the server.
type BodyEnds = Arc<Mutex<Vec<Instant>>>;

fn app(durable: &Durable, runtime: &AfterRuntime, ends: BodyEnds) -> Router {
    Router::new()
        .route(
            "/register",
            post(move |Query(q): Query<Register>| {
                let ends = ends.clone();
                async move {
                    for i in 0..q.n {
                        let mut job = Probe::new(format!("{}-{i}", q.tag));
                        job.key = q.key.clone();
                        job.fail_times = q.fail_times.unwrap_or(0);
                        job.backoff_ms = Some(1000);
                        after_durable(job).unwrap();
                    }
                    match q.stream_ms {
                        None => Body::from("registered"),
                        Some(ms) => {
                            Body::from_stream(futures_util::stream::unfold(0, move |step| {
                                let ends = ends.clone();
                                async move {
                                    match step {
                                        0 => Some((
                                            Ok::<_, Infallible>(Bytes::from_static(b"head ")),
                                            1,
                                        )),
                                        1 => {
                                            tokio::time::sleep(Duration::from_millis(ms)).await;
                                            ends.lock().unwrap().push(Instant::now());
                                            Some((Ok(Bytes::from_static(b"end")), 2))
                                        }
                                        _ => None,
                                    }
                                }
                            }))
                        }
                    }
                }
            }),
        )
        .layer(DurableLayer::new(durable.clone()))
        .layer(AfterLayer::new(runtime.clone()))
}

async fn job_rows(durable: &Durable) -> Vec<(String, i64)> {
    // A connection of its own, not the one that wrote.
    let other = sqlx::SqlitePool::connect(&format!("sqlite:{}", durable_path(durable).await))
        .await
        .unwrap();
    let rows = sqlx::query_as::<_, (String, i64)>("SELECT status, run_at FROM Jobs ORDER BY id")
        .fetch_all(&other)
        .await
        .unwrap();
    other.close().await;
    rows
}

async fn durable_path(durable: &Durable) -> String {
    let (_, _, file): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
        .fetch_one(durable.pool())
        .await
        .unwrap();
    file
}

#[tokio::test]
async fn the_row_is_visible_from_another_connection_when_the_client_has_the_head() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let db = TempDb::new("head");
        let durable = open(&db).await;
        let runtime = AfterRuntime::builder().build();
        let server = TestServer::start(app(&durable, &runtime, BodyEnds::default())).await;
        let client = Http::new(version);
        // The body streams for 2 s, so the release (after the body) cannot have
        // happened when the head arrives.
        let response = client
            .send("POST", &server.url("/register?tag=a&stream_ms=2000"), "")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let rows = job_rows(&durable).await;
        assert_eq!(
            rows.len(),
            1,
            "{version:?}: one job row once the head is here"
        );
        assert_eq!(
            rows[0].0, "Pending",
            "{version:?}: held until the response is finished"
        );
        let _ = response.into_body().collect().await.unwrap();
        server.stop().await;
        runtime.shutdown(WAIT).await;
        durable.close(WAIT).await;
    }
}

#[tokio::test]
async fn no_job_starts_before_its_streamed_response_is_finished() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let db = TempDb::new("order");
        let durable = open(&db).await;
        let runs = Runs::default();
        let workers = workers(&durable, &runs, 4).await;
        let runtime = AfterRuntime::builder().build();
        let ends = BodyEnds::default();
        let server = TestServer::start(app(&durable, &runtime, ends.clone())).await;
        let client = Http::new(version);
        let response = client
            .send("POST", &server.url("/register?tag=s&n=3&stream_ms=500"), "")
            .await
            .unwrap();
        let head_at = Instant::now();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"head end");
        assert!(
            head_at.elapsed() >= Duration::from_millis(450),
            "the body streamed"
        );
        eventually("three runs", WAIT, || async {
            (runs.len() == 3).then_some(())
        })
        .await;
        let body_end = ends.lock().unwrap()[0];
        for run in runs.0.lock().unwrap().iter() {
            assert!(
                run.at >= body_end,
                "{version:?}: {} started before the body's end",
                run.tag
            );
        }
        // Released by the response, not by the 60 s hold.
        assert!(head_at.elapsed() < Duration::from_secs(30));
        assert_eq!(durable.counts().released, 3);
        server.stop().await;
        runtime.shutdown(WAIT).await;
        assert!(workers.shutdown(WAIT).await.unfinished.is_empty());
        durable.close(WAIT).await;
    }
}

#[tokio::test]
async fn a_request_dropped_before_its_response_still_writes_its_jobs() {
    let db = TempDb::new("drop");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 2).await;
    let runtime = AfterRuntime::builder().build();
    let (reached, reached_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = Router::new()
        .route(
            "/hang",
            post(move || {
                let reached = reached.clone();
                async move {
                    after_durable(Probe::new("dropped")).unwrap();
                    let _ = reached.send(());
                    // The client goes away while the handler waits.
                    std::future::pending::<()>().await;
                    "never"
                }
            }),
        )
        .layer(DurableLayer::new(durable.clone()))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await;
    let client = Http::new(Version::HTTP_11);
    let url = server.url("/hang");
    let request = tokio::spawn(async move { client.send("POST", &url, "").await });
    let mut reached_rx = reached_rx;
    reached_rx.recv().await.unwrap();
    request.abort(); // closes the connection: hyper drops the handler's future
    eventually("the dropped request's job ran", WAIT, || async {
        (runs.of("dropped").len() == 1).then_some(())
    })
    .await;
    let counts = durable.counts();
    assert_eq!(
        (counts.registered, counts.persisted, counts.persist_failed),
        (1, 1, 0)
    );
    server.stop().await;
    runtime.shutdown(WAIT).await;
    workers.shutdown(WAIT).await;
    durable.close(WAIT).await;
}

#[tokio::test]
async fn outbox_rollback_writes_nothing_and_commit_writes_one_job_invisible_before() {
    let db = TempDb::new("outbox");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 1).await;

    // Rolled back: no row, no run.
    let mut tx = durable.pool().begin().await.unwrap();
    assert!(matches!(
        enqueue(&mut tx, Probe::new("rolled-back")).await.unwrap(),
        Enqueued::New(_)
    ));
    tx.rollback().await.unwrap();

    // Committed: invisible (to another connection, hence to workers) before the commit.
    let mut tx = durable.pool().begin().await.unwrap();
    enqueue(&mut tx, Probe::new("committed")).await.unwrap();
    assert_eq!(
        job_rows(&durable).await.len(),
        0,
        "invisible before the commit"
    );
    assert_eq!(runs.len(), 0);
    tx.commit().await.unwrap();

    eventually("the committed job ran", WAIT, || async {
        (runs.of("committed").len() == 1).then_some(())
    })
    .await;
    // One worker slot, oldest first: had the rolled-back job existed, it would have
    // run before the committed one.
    assert!(runs.of("rolled-back").is_empty());
    // The worker records the end just after the run returns.
    eventually("the committed job recorded as done", WAIT, || async {
        (durable.status_counts().await.unwrap().done == 1).then_some(())
    })
    .await;
    assert_eq!(durable.status_counts().await.unwrap().total(), 1);
    workers.shutdown(WAIT).await;
    durable.close(WAIT).await;
}

#[tokio::test]
async fn an_idempotency_key_gives_one_row_one_run_and_reports_the_duplicate() {
    let db = TempDb::new("key");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 2).await;
    let runtime = AfterRuntime::builder().build();
    let server = TestServer::start(app(&durable, &runtime, BodyEnds::default())).await;
    let client = Http::new(Version::HTTP_11);
    for _ in 0..2 {
        let (status, _) = client
            .text("POST", &server.url("/register?tag=k&key=order-7"), "")
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    eventually("one run", WAIT, || async {
        (runs.len() == 1).then_some(())
    })
    .await;
    let counts = durable.counts();
    assert_eq!(
        (counts.registered, counts.persisted, counts.duplicates),
        (2, 2, 1)
    );

    // The outbox form says so to its caller.
    let mut tx = durable.pool().begin().await.unwrap();
    let mut again = Probe::new("k-0");
    again.key = Some("order-7".into());
    assert_eq!(enqueue(&mut tx, again).await.unwrap(), Enqueued::Duplicate);
    tx.commit().await.unwrap();

    assert_eq!(durable.status_counts().await.unwrap().total(), 1);
    server.stop().await;
    runtime.shutdown(WAIT).await;
    workers.shutdown(WAIT).await;
    assert_eq!(runs.len(), 1, "one run in all");
    durable.close(WAIT).await;
}

#[tokio::test]
async fn retries_follow_the_backoff_then_the_job_is_dead_and_requeueable() {
    let db = TempDb::new("retry");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 4).await;

    let mut tx = durable.pool().begin().await.unwrap();
    // Fails twice (k = 2 < max = 4): three runs, 1 s then 2 s apart at least.
    let mut flaky = Probe::new("flaky");
    flaky.fail_times = 2;
    flaky.max_attempts = Some(4);
    flaky.backoff_ms = Some(1000);
    enqueue(&mut tx, flaky).await.unwrap();
    // Always fails: exactly max = 3 runs, then dead.
    let mut broken = Probe::new("broken");
    broken.fail_times = u32::MAX;
    broken.max_attempts = Some(3);
    broken.backoff_ms = Some(1000);
    enqueue(&mut tx, broken).await.unwrap();
    tx.commit().await.unwrap();

    eventually(
        "flaky succeeded and broken is dead",
        Duration::from_secs(30),
        || async {
            let s = durable.status_counts().await.unwrap();
            (s.done == 1 && s.dead == 1).then_some(())
        },
    )
    .await;
    let flaky = runs.of("flaky");
    assert_eq!(flaky.len(), 3, "k + 1 runs");
    let gaps: Vec<Duration> = flaky.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, backoff) in gaps.iter().zip([1000u64, 2000]) {
        let backoff = Duration::from_millis(backoff);
        assert!(
            *gap >= backoff,
            "gap {gap:?} shorter than the backoff {backoff:?}"
        );
        // Run times are whole seconds, plus a poll.
        assert!(
            *gap <= backoff + Duration::from_millis(1500),
            "gap {gap:?} for {backoff:?}"
        );
    }
    assert_eq!(runs.of("broken").len(), 3, "exactly max attempts");

    let counts = durable.counts();
    assert_eq!(counts.started, 6);
    assert_eq!(counts.succeeded, 1);
    assert_eq!(counts.failed, 5);
    assert_eq!(counts.retried, 4);
    assert_eq!(counts.dead, 1);
    assert_eq!(counts.failed, counts.retried + counts.dead);

    let dead = durable.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].status.as_str(), dead[0].attempts), ("dead", 3));
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("fails on purpose")
    );
    assert!(durable.requeue(&dead[0].id).await.unwrap());
    eventually("the requeued job ran again", WAIT, || async {
        (runs.of("broken").len() == 4).then_some(())
    })
    .await;
    workers.shutdown(WAIT).await;
    durable.close(WAIT).await;
}

#[tokio::test]
async fn a_long_backoff_survives_a_restart() {
    let db = TempDb::new("backoff-restart");
    let runs = Runs::default();
    let durable = open(&db).await;
    let first = workers(&durable, &runs, 1).await;
    let mut tx = durable.pool().begin().await.unwrap();
    let mut job = Probe::new("later");
    job.fail_times = 1;
    job.backoff_ms = Some(4000);
    enqueue(&mut tx, job).await.unwrap();
    tx.commit().await.unwrap();
    eventually("the first run failed", WAIT, || async {
        (durable.status_counts().await.unwrap().failed == 1).then_some(())
    })
    .await;
    let failed_at = runs.of("later")[0].at;
    // Restart: new workers, new pool, nothing in memory survives.
    first.shutdown(WAIT).await;
    durable.close(WAIT).await;
    let durable = open(&db).await;
    let second = workers(&durable, &runs, 1).await;
    eventually("the second run", WAIT, || async {
        (runs.of("later").len() == 2).then_some(())
    })
    .await;
    let gap = runs.of("later")[1].at - failed_at;
    assert!(
        gap >= Duration::from_secs(4),
        "the restart shortened the backoff to {gap:?}"
    );
    // The worker records the end just after the run returns.
    eventually("the second run recorded as done", WAIT, || async {
        (durable.status_counts().await.unwrap().done == 1).then_some(())
    })
    .await;
    second.shutdown(WAIT).await;
    durable.close(WAIT).await;
}

#[tokio::test]
async fn after_n_requests_of_m_jobs_the_counts_add_up_and_match_the_database() {
    const N: usize = 20;
    const M: u32 = 3;
    let db = TempDb::new("counts");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 4).await;
    let runtime = AfterRuntime::builder().build();
    let server = TestServer::start(app(&durable, &runtime, BodyEnds::default())).await;
    let mut requests = Vec::new();
    for i in 0..N {
        let client = Http::new(if i % 2 == 0 {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        });
        // Every fifth request's jobs fail once, then succeed.
        let fail = if i % 5 == 0 { 1 } else { 0 };
        let url = server.url(&format!("/register?tag=r{i}&n={M}&fail_times={fail}"));
        requests.push(tokio::spawn(
            async move { client.text("POST", &url, "").await },
        ));
    }
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().0, 200);
    }
    let total = N as u64 * u64::from(M);
    eventually("every job done", Duration::from_secs(30), || async {
        (durable.status_counts().await.unwrap().done == total).then_some(())
    })
    .await;
    server.stop().await;
    runtime.shutdown(WAIT).await;
    workers.shutdown(WAIT).await;
    let c = durable.counts();
    let db_counts = durable.status_counts().await.unwrap();
    assert_eq!(c.registered, total);
    assert_eq!(c.registered, c.persisted + c.persist_failed);
    assert_eq!(c.persist_failed, 0);
    assert_eq!(c.released, total);
    let retried = (N as u64).div_ceil(5) * u64::from(M);
    assert_eq!(c.retried, retried);
    assert_eq!(c.failed, c.retried + c.dead);
    assert_eq!(c.started, c.succeeded + c.failed + c.interrupted);
    assert_eq!(c.succeeded, db_counts.done);
    assert_eq!(db_counts.total(), total);
    assert_eq!(runs.len() as u64, c.started);
    durable.close(WAIT).await;
}

#[tokio::test]
async fn a_worker_whose_row_was_removed_registers_again() {
    let db = TempDb::new("worker-row");
    let durable = open(&db).await;
    let workers = workers(&durable, &Runs::default(), 1).await;
    let rows = format!("{}/%", workers.name());
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM Workers WHERE id LIKE ?")
            .bind(&rows)
            .fetch_one(durable.pool())
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1, "registered when started");
    sqlx::query("DELETE FROM Workers WHERE id LIKE ?")
        .bind(&rows)
        .execute(durable.pool())
        .await
        .unwrap();
    // Its next heartbeat (every second here) finds no row, and registers it again.
    eventually("the worker registered again", WAIT, || async {
        (count().await == 1).then_some(())
    })
    .await;
    workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn after_durable_outside_a_request_is_an_error() {
    let err = after_durable(Probe::new("nowhere")).unwrap_err();
    assert_eq!(err.kind(), DurableErrorKind::NoScope);
}

#[tokio::test]
async fn without_an_after_layer_the_jobs_are_released_at_once_with_a_warning() {
    let db = TempDb::new("no-after-layer");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 2).await;
    let app = Router::new()
        .route(
            "/register",
            post(|| async {
                after_durable(Probe::new("bare")).unwrap();
                "registered"
            }),
        )
        .layer(DurableLayer::new(durable.clone()));
    let server = TestServer::start(app).await;
    let (status, _) = Http::new(Version::HTTP_11)
        .text("POST", &server.url("/register"), "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // Not left to the 60 s hold: released by the layer itself.
    eventually("the job ran", WAIT, || async {
        (runs.of("bare").len() == 1).then_some(())
    })
    .await;
    assert_eq!(durable.counts().released, 1);
    server.stop().await;
    workers.shutdown(WAIT).await;
    durable.close(WAIT).await;
}

#[tokio::test]
async fn jobs_of_an_error_response_are_still_written_and_run() {
    let db = TempDb::new("error-response");
    let durable = open(&db).await;
    let runs = Runs::default();
    let workers = workers(&durable, &runs, 2).await;
    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route(
            "/fail",
            post(|| async {
                after_durable(Probe::new("after-500")).unwrap();
                (http::StatusCode::INTERNAL_SERVER_ERROR, "failed")
            }),
        )
        .layer(DurableLayer::new(durable.clone()))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await;
    let (status, _) = Http::new(Version::HTTP_2)
        .text("POST", &server.url("/fail"), "")
        .await
        .unwrap();
    assert_eq!(status, 500);
    eventually("the job ran", WAIT, || async {
        (runs.of("after-500").len() == 1).then_some(())
    })
    .await;
    server.stop().await;
    runtime.shutdown(WAIT).await;
    workers.shutdown(WAIT).await;
    durable.close(WAIT).await;
}
