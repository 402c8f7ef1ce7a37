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
    NoScope,
    /// The runtime has finished [`shutdown`](crate::AfterRuntime::shutdown).
    ShutDown,
    /// `max_pending` tasks were already waiting and the overload policy rejected this
    /// one.
    Overloaded,
}

impl AfterError {
    pub(crate) fn new(kind: AfterErrorKind) -> Self {
        AfterError { kind }
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
        f.write_str(match self.kind {
            AfterErrorKind::NoScope => {
                "no request scope: `after()` must be called while handling a request under \
                 `AfterLayer`, or inside a running after task"
            }
            AfterErrorKind::ShutDown => "the after runtime is shut down and takes no new tasks",
            AfterErrorKind::Overloaded => {
                "the after runtime is overloaded: `max_pending` tasks are already waiting"
            }
        })
    }
}

impl std::error::Error for AfterError {}
