//! What is current where code runs: the request scope `AfterLayer` set, the scope of
//! the running after task, and the span. [`after()`] and [`outcome()`] read them.

use std::future::Future;
use std::sync::Arc;

use super::RequestScope;
use crate::error::{AfterError, AfterErrorKind};
use crate::job::Job;
use crate::outcome::Outcome;
use crate::task::{Location, TaskOutput};

tokio::task_local! {
    /// Set by `AfterLayer` around the inner service's future.
    pub(crate) static REQUEST: Arc<RequestScope>;
    /// Set by the executor around a running task. Tasks are spawned, so a running
    /// task's scope is always outside any request scope set within it: `REQUEST`,
    /// when set, is the innermost.
    pub(crate) static RUNNING: Arc<RequestScope>;
}

/// The span current here, which task spans follow from. With no subscriber ever set
/// there is none, and asking for it costs a thread-local lookup per request.
pub(crate) fn current_span() -> tracing::Span {
    if tracing::dispatcher::has_been_set() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

/// The scope a registration made here belongs to: the request's under `AfterLayer`
/// (the innermost, when a request is served from within a task), else the running
/// task's.
fn current() -> Option<Arc<RequestScope>> {
    layer_scope().or_else(|| RUNNING.try_with(Arc::clone).ok())
}

/// Whether this code runs inside a request scope `AfterLayer` set.
fn in_layer() -> bool {
    REQUEST.try_with(|_| ()).is_ok()
}

/// The request scope `AfterLayer` set, if this code runs inside one.
pub(crate) fn layer_scope() -> Option<Arc<RequestScope>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// Runs `future` after the current request's response has been sent.
///
/// Call it anywhere in a request's task under [`AfterLayer`](crate::AfterLayer): the
/// handler, a helper it awaits, middleware inside the layer, or a running after task
/// (where the new task starts at once). It only enqueues: it never waits and never
/// blocks. The future may end in `()` or `Result<(), E>` with `E: Display`; an
/// `Err` or a panic is logged and counted, never seen by the client.
///
/// # Errors
///
/// Outside a request scope, [`AfterErrorKind::NoScope`]: the future is dropped unrun
/// and the caller told, never silently. After shutdown or past `max_pending`,
/// [`AfterErrorKind::ShutDown`] or [`AfterErrorKind::Overloaded`], also counted in
/// [`Stats::rejected`](crate::Stats::rejected).
///
/// # Example
///
/// ```
/// use after_runtime::{after, AfterLayer, AfterRuntime};
/// use axum::{routing::post, Router};
///
/// async fn signup() -> &'static str {
///     // A helper can register work too; it runs once the response is out.
///     send_welcome_mail("ada@example.com");
///     "welcome"
/// }
///
/// fn send_welcome_mail(to: &'static str) {
///     let registered = after(async move {
///         // ... talk to the mail server ...
///         Ok::<(), std::io::Error>(())
///     });
///     if let Err(err) = registered {
///         tracing::warn!(%err, to, "welcome mail not scheduled");
///     }
/// }
///
/// let runtime = AfterRuntime::builder().build();
/// let app: Router = Router::new()
///     .route("/signup", post(signup))
///     .layer(AfterLayer::new(runtime));
/// # let _ = app;
/// ```
#[track_caller]
pub fn after<F>(future: F) -> Result<(), AfterError>
where
    F: Future + Send + 'static,
    F::Output: TaskOutput,
{
    let location = Location::caller();
    let scope = current().ok_or(AfterError::new(AfterErrorKind::NoScope))?;
    scope.register(Job::new(future, location))
}

/// What became of the response of the request that registered the running task.
///
/// `None` outside a running after task.
///
/// ```
/// use after_runtime::outcome;
///
/// // Not inside an after task:
/// assert!(outcome().is_none());
/// ```
pub fn outcome() -> Option<Outcome> {
    // Inside a request served from within a task, that request has no outcome yet.
    if in_layer() {
        return None;
    }
    RUNNING.try_with(|scope| scope.outcome()).ok().flatten()
}
