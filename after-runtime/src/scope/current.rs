//! What is current where code runs: the request scope `AfterLayer` set, the scope of
//! the running after task, and the span; and [`outcome()`], which reads the running
//! task's.

use std::sync::Arc;

use super::RequestScope;
use crate::outcome::Outcome;

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
pub(super) fn current() -> Option<Arc<RequestScope>> {
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
