//! The guard whose drop releases a request's tasks.

use std::sync::Arc;

use tokio_util::task::task_tracker::TaskTrackerToken;

use super::RequestScope;
use crate::outcome::{Delivery, Outcome};

/// Releases a request's tasks when dropped, with the outcome it holds. Under
/// `AfterLayer` it is made with the request, held by the response future until the
/// response head is out, then by the body; dropped before a response, it releases
/// the tasks as "not produced".
pub(crate) struct Release {
    pub(crate) scope: Arc<RequestScope>,
    pub(crate) outcome: Outcome,
    /// Keeps a draining runtime waiting for this request: it may still register, and
    /// its tasks wait for its response. Dropped after the release (fields drop after
    /// `drop`), so a draining runtime never sees a moment with nothing in flight.
    _in_flight: TaskTrackerToken,
}

impl Release {
    /// For a request entering `AfterLayer`: "not produced" until a response is.
    pub(crate) fn new(scope: Arc<RequestScope>) -> Self {
        Release {
            _in_flight: scope.runtime.token(),
            scope,
            outcome: Outcome::new(Delivery::NotProduced),
        }
    }

    /// For a scope made without `AfterLayer`, released when its handler ends.
    pub(crate) fn standalone(scope: Arc<RequestScope>) -> Self {
        let mut release = Release::new(scope);
        release.outcome = Outcome::new(Delivery::Unobserved);
        release
    }

    /// Whether a task can still be registered in the scope: one is already waiting,
    /// or code other than this guard (a handler moved to another task, a clone of
    /// the request's extensions) still holds the scope. When not, the response's
    /// body need not be watched.
    pub(crate) fn may_hold_tasks(&self) -> bool {
        Arc::strong_count(&self.scope) > 1 || self.scope.has_waiting()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.scope.release(self.outcome);
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}
