//! Shared support for the workspace's end-to-end tests and benchmarks: a real server
//! on loopback, real HTTP/1.1 and HTTP/2 clients, and a way to capture `tracing`
//! output. Not published. The user-facing examples (`tour`, `orders`, `metrics`,
//! `otel`) do not use it: each stands on `after-runtime` and public crates alone.

pub mod handlers;
pub mod process;

use std::cell::RefCell;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An axum app served with `axum::serve` on `127.0.0.1`, on a port the OS picked.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    /// Serves `app` (HTTP/1.1 and HTTP/2 with prior knowledge) until [`stop`](Self::stop).
    pub async fn start(app: Router) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve.into_future());
        Ok(TestServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// `http://127.0.0.1:port` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful shutdown: stops accepting and waits for open connections to finish.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}

/// Which HTTP version a [`Client`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

impl Version {
    /// Both versions, for tests that must hold on each.
    pub const BOTH: [Version; 2] = [Version::Http1, Version::Http2];
}

/// A hyper client pinned to one HTTP version.
#[derive(Debug, Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

/// A response with its body read to the end.
#[derive(Debug)]
pub struct Received {
    /// Status line and headers.
    pub head: http::response::Parts,
    /// The whole body.
    pub body: Bytes,
}

impl Received {
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    /// A client that speaks `version` only.
    pub fn new(version: Version) -> Self {
        let mut builder = HyperClient::builder(TokioExecutor::new());
        builder.http2_only(version == Version::Http2);
        Client {
            inner: builder.build_http(),
        }
    }

    /// Sends `request` and returns the response head, body unread.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, BoxError> {
        Ok(self.inner.request(request).await?)
    }

    /// Sends `request` and reads the whole body.
    pub async fn fetch(&self, request: Request<Full<Bytes>>) -> Result<Received, BoxError> {
        let response = self.send(request).await?;
        let (head, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Received { head, body })
    }

    /// `GET url`, body read.
    pub async fn get(&self, url: &str) -> Result<Received, BoxError> {
        self.fetch(Request::get(url).body(Full::default())?).await
    }
}

/// The error type the support functions return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Formatted `tracing` output, captured for assertions.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    /// Where the process's subscriber writes this thread's events, if anywhere.
    static CAPTURE: RefCell<Option<CapturedLogs>> = const { RefCell::new(None) };
}

impl CapturedLogs {
    /// Captures every event at `DEBUG` and above logged on this thread until the
    /// guard drops. Use with a current-thread runtime so the server and tasks log on
    /// this thread.
    ///
    /// One global subscriber serves every capture, rather than a thread-scoped one
    /// each: `tracing` caches whether a callsite is enabled process-wide, and with
    /// scoped subscribers coming and going on other test threads that cache now and
    /// then said "never" for an event this thread wanted (seen: a test's failure
    /// events missing, once in a few runs of the loopback suite).
    ///
    /// # Panics
    ///
    /// If the process already has another global subscriber.
    pub fn install() -> (Self, CaptureGuard) {
        static SUBSCRIBER: Once = Once::new();
        SUBSCRIBER.call_once(|| {
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(ThreadCapture)
                .try_init()
                .expect("CapturedLogs needs the process's global subscriber to itself");
        });
        let logs = CapturedLogs::default();
        let previous = CAPTURE.replace(Some(logs.clone()));
        (logs, CaptureGuard { previous })
    }

    /// Everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.contents()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Ends a [`CapturedLogs::install`] on its thread when dropped.
#[derive(Debug)]
#[must_use = "the capture ends when the guard drops"]
pub struct CaptureGuard {
    previous: Option<CapturedLogs>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.set(self.previous.take());
    }
}

/// The global subscriber's writer: the capture of the thread that logs, or nowhere.
struct ThreadCapture;

impl io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURE.with_borrow(|capture| {
            if let Some(logs) = capture {
                logs.buffer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadCapture {
    type Writer = ThreadCapture;

    fn make_writer(&'a self) -> ThreadCapture {
        ThreadCapture
    }
}

/// Awaits `future`, failing the test if it takes more than 20 seconds. A guard
/// against hangs, never the proof of a behaviour: tests prove with signals.
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(20), future)
        .await
        .expect("the awaited signal never came (20 s guard)")
}

/// Says on stderr, once, when this build has after-runtime's `metrics` feature (on
/// by default in this workspace, for `examples/metrics.rs`): it times every task and
/// publishes every count, which `benches/RESULTS.md` does not measure. The benchmark
/// programs call it first.
pub fn note_metrics_feature(program: &str) {
    if cfg!(feature = "metrics") {
        eprintln!(
            "note: {program} is built with after-runtime's `metrics` feature (this \
             workspace's default); the figures in benches/RESULTS.md are without it: \
             add --no-default-features to compare"
        );
    }
}
