//! A database that refuses writes (opened read-only) never loses a request's jobs
//! silently: the client gets the configured 503, or its response while the failure
//! is counted and logged.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use after_durable::{Durable, DurableLayer, OnPersistFailure, after_durable};
use after_runtime::{AfterLayer, AfterRuntime};
use axum::Router;
use axum::routing::post;
use http::Version;
use support::{Http, Probe, TempDb, TestServer};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn serve_read_only(
    db: &TempDb,
    policy: OnPersistFailure,
) -> (Durable, AfterRuntime, TestServer) {
    let durable = Durable::builder()
        .read_only(true)
        .on_persist_failure(policy)
        .open(&db.url())
        .await
        .unwrap();
    let runtime = AfterRuntime::builder().build();
    let app = Router::new()
        .route(
            "/register",
            post(|| async {
                after_durable(Probe::new("refused")).unwrap();
                "the handler's response"
            }),
        )
        .layer(DurableLayer::new(durable.clone()))
        .layer(AfterLayer::new(runtime.clone()));
    let server = TestServer::start(app).await;
    (durable, runtime, server)
}

#[tokio::test]
async fn a_persist_failure_is_a_503_or_the_response_and_always_counted_and_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TempDb::new("read-only");
    // The schema exists, written by a writer that stays open.
    let writer_handle = Durable::builder().open(&db.url()).await.unwrap();

    for (policy, status, body) in [
        (OnPersistFailure::ServiceUnavailable, 503, ""),
        (
            OnPersistFailure::KeepResponse,
            200,
            "the handler's response",
        ),
    ] {
        let (durable, runtime, server) = serve_read_only(&db, policy).await;
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let (got, text) = Http::new(version)
                .text("POST", &server.url("/register"), "")
                .await
                .unwrap();
            assert_eq!(
                (got, text.as_str()),
                (status, body),
                "{policy:?} {version:?}"
            );
        }
        let c = durable.counts();
        assert_eq!(
            (c.registered, c.persisted, c.persist_failed),
            (2, 0, 2),
            "{policy:?}"
        );
        assert_eq!(c.registered, c.persisted + c.persist_failed);
        server.stop().await;
        runtime.shutdown(Duration::from_secs(5)).await;
        durable.close(Duration::from_secs(5)).await;
    }
    assert_eq!(
        writer_handle.status_counts().await.unwrap().total(),
        0,
        "nothing written"
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failures = logs
        .lines()
        .filter(|l| l.contains("after_durable.persist_failed"))
        .count();
    assert_eq!(failures, 4, "one error line per failed request:\n{logs}");
    assert!(logs.contains("ERROR"));
    writer_handle.close(Duration::from_secs(5)).await;
}
