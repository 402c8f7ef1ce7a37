//! What the tests share: a loopback server, HTTP/1.1 and HTTP/2 clients, a job that
//! reports its runs, and polling with a deadline.
#![allow(dead_code, unreachable_pub)]

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use after_durable::{Backoff, Job, JobContext, JobError, JobOptions};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A new SQLite file in the temporary directory, removed on drop.
pub struct TempDb {
    pub path: std::path::PathBuf,
}

impl TempDb {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "after-durable-test-{tag}-{}-{}.db",
            std::process::id(),
            ulid_like()
        ));
        TempDb { path }
    }
    pub fn url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn ulid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve.into_future());
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(version: Version) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        if version == Version::HTTP_2 {
            builder.http2_only(true);
        }
        Http {
            client: builder.build_http(),
        }
    }
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: &str,
    ) -> Result<Response<Incoming>, BoxError> {
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        Ok(self.client.request(request).await?)
    }
    pub async fn text(
        &self,
        method: &str,
        url: &str,
        body: &str,
    ) -> Result<(u16, String), BoxError> {
        let response = self.send(method, url, body).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` at the
/// deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One run of a [`Probe`] job, as it saw it.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    pub tag: String,
    pub attempt: u32,
    pub at: Instant,
}

/// Where [`Probe`] jobs report their runs.
#[derive(Clone, Default)]
pub struct Runs(pub Arc<Mutex<Vec<ProbeRun>>>);

impl Runs {
    pub fn of(&self, tag: &str) -> Vec<ProbeRun> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.tag == tag)
            .cloned()
            .collect()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A job that records each run, fails its first `fail_times` runs, and has the
/// options it is given.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Probe {
    pub tag: String,
    pub fail_times: u32,
    pub max_attempts: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub key: Option<String>,
    pub work_ms: u64,
}

impl Probe {
    pub fn new(tag: impl Into<String>) -> Self {
        Probe {
            tag: tag.into(),
            ..Default::default()
        }
    }
}

impl Job for Probe {
    const NAME: &'static str = "probe";
    type State = Runs;
    async fn run(self, cx: JobContext<Runs>) -> Result<(), JobError> {
        cx.state().0.lock().unwrap().push(ProbeRun {
            tag: self.tag.clone(),
            attempt: cx.attempt(),
            at: Instant::now(),
        });
        if self.work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.work_ms)).await;
        }
        if cx.attempt() <= self.fail_times {
            return Err(format!("{} fails on purpose (attempt {})", self.tag, cx.attempt()).into());
        }
        Ok(())
    }
    fn options(&self) -> JobOptions {
        let mut options = JobOptions::new();
        if let Some(n) = self.max_attempts {
            options = options.max_attempts(n);
        }
        if let Some(ms) = self.backoff_ms {
            options = options.backoff(Backoff::exponential(Duration::from_millis(ms)));
        }
        if let Some(key) = &self.key {
            options = options.idempotency_key(key.clone());
        }
        options
    }
}
