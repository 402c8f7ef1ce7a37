//! [`DurableLayer`]: writes a request's jobs before its response goes out, held, and
//! releases them once the response is finished.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::OnPersistFailure;
use crate::counts::bump;
use crate::durable::Durable;
use crate::scope::{REQUEST, RequestJobs};
use crate::store::PendingJob;

/// Gives each request a durable scope for [`after_durable`](crate::after_durable)
/// and [`enqueue`](crate::enqueue). Put it inside `after_runtime::AfterLayer`
/// (added before it): the release of a request's jobs is an after task of that
/// request, so it starts when the response is finished.
///
/// For a request that registered jobs, after the handler returns: one transaction
/// writes them with their run time `hold` from now, then the response goes out,
/// and once it is finished they are made runnable. A request that registered
/// nothing costs a scope and a task-local, no database call.
///
/// If the request's future is dropped before its jobs are written (the client went
/// away, a timeout), a drop guard writes them on a task of its own, runnable at
/// once (there is no response to wait for); [`Durable::close`] waits for such
/// writes. Without a Tokio runtime at that moment they are lost, counted in
/// `persist_failed` and logged. Without an `AfterLayer` around it the jobs are made
/// runnable as soon as they are written, before the response, with a warning.
///
/// ```
/// use after_durable::{Durable, DurableLayer};
/// use after_runtime::{AfterLayer, AfterRuntime};
/// use axum::{routing::get, Router};
///
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// let durable = Durable::builder().open("sqlite::memory:").await?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(DurableLayer::new(durable))
///     .layer(AfterLayer::new(AfterRuntime::builder().build()));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DurableLayer {
    durable: Durable,
}

impl DurableLayer {
    /// A layer writing to `durable`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
    /// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
    /// let layer = after_durable::DurableLayer::new(durable);
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn new(durable: Durable) -> Self {
        DurableLayer { durable }
    }
}

impl<S> Layer<S> for DurableLayer {
    type Service = DurableService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DurableService {
            inner,
            durable: self.durable.clone(),
        }
    }
}

/// The service [`DurableLayer`] makes.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), after_durable::DurableError> {
/// use tower::Layer;
/// let durable = after_durable::Durable::builder().open("sqlite::memory:").await?;
/// let svc: after_durable::DurableService<_> = after_durable::DurableLayer::new(durable)
///     .layer(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// # let _ = svc; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DurableService<S> {
    inner: S,
    durable: Durable,
}

/// The response future of [`DurableService`].
pub type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send + 'static>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for DurableService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = Infallible>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = Infallible;
    type Future = ResponseFuture<ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let scope = Arc::new(RequestJobs::new(self.durable.clone()));
        let inner = REQUEST.scope(Arc::clone(&scope), self.inner.call(request));
        Box::pin(respond(scope, inner))
    }
}

async fn respond<F, B>(scope: Arc<RequestJobs>, inner: F) -> Result<Response<B>, Infallible>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: Default,
{
    let mut guard = DropGuard {
        scope: Arc::clone(&scope),
        writing: None,
        armed: true,
    };
    let Ok(response) = inner.await;
    let (jobs, held) = scope.take();
    if jobs.is_empty() && held.is_empty() {
        guard.disarm();
        return Ok(response);
    }
    let durable = &scope.durable;
    let jobs: Arc<[PendingJob]> = jobs.into();
    guard.writing = Some((Arc::clone(&jobs), held.clone()));
    let mut release = held;
    let mut response = response;
    if !jobs.is_empty() {
        match durable.write_batch(&jobs, true).await {
            Ok(ids) => release.extend(ids),
            Err(_) => {
                // Counted and logged by the write.
                if durable.inner.config.on_persist_failure == OnPersistFailure::ServiceUnavailable {
                    response = Response::new(B::default());
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
            }
        }
    }
    guard.disarm();
    if !release.is_empty() {
        let releaser = durable.clone();
        let ids = release.clone();
        let task = after_runtime::after_with(
            after_runtime::TaskOptions::new().name("after_durable.release"),
            async move { releaser.release(&release).await },
        );
        if let Err(error) = task {
            tracing::warn!(%error, "after_durable: no AfterLayer around DurableLayer (or it refused the task): jobs released before the response is finished");
            let releaser = durable.clone();
            durable
                .inner
                .background
                .spawn(async move { releaser.release(&ids).await });
        }
    }
    Ok(response)
}

/// Writes a dropped request's jobs on a task of its own.
struct DropGuard {
    scope: Arc<RequestJobs>,
    /// Jobs taken from the scope and being written when the future was dropped.
    writing: Option<(Arc<[PendingJob]>, Vec<String>)>,
    armed: bool,
}

impl DropGuard {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (mut jobs, mut held) = self.scope.take();
        if let Some((writing, writing_held)) = self.writing.take() {
            jobs.extend(writing.iter().cloned());
            held.extend(writing_held);
        }
        if jobs.is_empty() && held.is_empty() {
            return;
        }
        let durable = self.scope.durable.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(_) => {
                let tracker = durable.inner.background.clone();
                tracker.spawn(flush_detached(durable, jobs, held));
            }
            Err(_) => {
                bump(&durable.inner.counters.persist_failed, jobs.len() as u64);
                tracing::error!(
                    jobs = jobs.len(),
                    "after_durable.persist_failed: request dropped outside a Tokio runtime; its jobs are lost"
                );
            }
        }
    }
}

/// Writes what a dropped request had not written (its write may have committed
/// before the drop: those rows are kept) and makes everything runnable now.
async fn flush_detached(durable: Durable, jobs: Vec<PendingJob>, held: Vec<String>) {
    let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    let existing: HashSet<String> = if ids.is_empty() {
        HashSet::new()
    } else {
        crate::store::existing(&durable.inner.db, &ids)
            .await
            .into_iter()
            .collect()
    };
    bump(&durable.inner.counters.persisted, existing.len() as u64);
    let missing: Vec<PendingJob> = jobs
        .into_iter()
        .filter(|j| !existing.contains(&j.id.to_string()))
        .collect();
    if !missing.is_empty() {
        let _ = durable.write_batch(&missing, false).await;
    }
    let release: Vec<String> = existing.into_iter().chain(held).collect();
    durable.release(&release).await;
}
