//! The error `after()` returns when it cannot take a task.

use std::fmt;

/// Why a task could not be registered.
///
/// Returned by [`after`](crate::after()). The task was not queued; when the cause is
/// the runtime (overload, shutdown) the attempt is also counted in
/// [`Stats::rejected`](crate::Stats::rejected) and logged.
///
/// ```
/// use after_runtime::{after, AfterErrorKind};
///
/// # #[tokio::main] async fn main() {
/// // Outside a request there is nowhere to attach the task.
/// let err = after(async {}).unwrap_err();
/// assert_eq!(err.kind(), AfterErrorKind::NoScope);
/// assert!(err.to_string().contains("no request scope"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AfterError {
    kind: AfterErrorKind,
    /// For `Overloaded`: the request's own bound, when that was the one reached.
    per_request: Option<usize>,
}

/// The cause of an [`AfterError`].
///
/// ```
/// use after_runtime::{after, AfterErrorKind};
///
/// # #[tokio::main] async fn main() {
/// match after(async {}) {
///     Ok(()) => {}
///     Err(e) if e.kind() == AfterErrorKind::Overloaded => { /* shed load */ }
///     Err(e) => eprintln!("not scheduled: {e}"),
/// }
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AfterErrorKind {
    /// `after()` was called outside a request handled under
    /// [`AfterLayer`](crate::AfterLayer) and outside a running after task.
    ///
    /// Usually the layer order: a middleware added with `.layer()` *after*
    /// `AfterLayer` wraps it, so it runs outside the request scope (the last
    /// `.layer()` call is the outermost). Also code spawned with `tokio::spawn`, a
    /// WebSocket's `on_upgrade` callback, or a response body's stream: they run in
    /// another task, or after the handler's future is gone.
    NoScope,
    /// The runtime has finished [`shutdown`](crate::AfterRuntime::shutdown).
    ShutDown,
    /// `max_pending` tasks were already waiting, or this request already held
    /// `max_pending_per_request` tasks waiting for its response, and the overload
    /// policy rejected this one.
    Overloaded,
}

impl AfterError {
    pub(crate) fn new(kind: AfterErrorKind) -> Self {
        AfterError {
            kind,
            per_request: None,
        }
    }

    /// The request already holds `limit` tasks waiting for its response.
    pub(crate) fn per_request(limit: usize) -> Self {
        AfterError {
            kind: AfterErrorKind::Overloaded,
            per_request: Some(limit),
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// # use after_runtime::{after, AfterErrorKind};
    /// # #[tokio::main] async fn main() {
    /// assert_eq!(after(async {}).unwrap_err().kind(), AfterErrorKind::NoScope);
    /// # }
    /// ```
    pub fn kind(&self) -> AfterErrorKind {
        self.kind
    }
}

impl fmt::Display for AfterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(limit) = self.per_request {
            return write!(
                f,
                "the after runtime is overloaded: this request already holds {limit} tasks \
                 waiting for its response (`max_pending_per_request`)"
            );
        }
        f.write_str(match self.kind {
            AfterErrorKind::NoScope => {
                "no request scope: `after()` must be called while handling a request under \
                 `AfterLayer`, or inside a running after task. Middleware added with \
                 `.layer()` after `AfterLayer` sits outside it (the last `.layer()` is the \
                 outermost), and code in `tokio::spawn` runs outside the request's task"
            }
            AfterErrorKind::ShutDown => "the after runtime is shut down and takes no new tasks",
            AfterErrorKind::Overloaded => {
                "the after runtime is overloaded: `max_pending` tasks are already waiting"
            }
        })
    }
}

impl std::error::Error for AfterError {}
