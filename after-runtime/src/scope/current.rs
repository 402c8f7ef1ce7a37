//! What is current where code runs: the request scope `AfterLayer` set, the scope of
//! the running after task, and the span; and [`outcome()`], which reads the running
//! task's.
//!
//! A scope is current while the future that carries it (the layer's response future,
//! a running task) is polled or dropped: [`enter`] puts it in a thread-local slot and
//! takes it back out, as `tokio::task_local!` does, but in a plain `Cell` swap that
//! costs a few instructions where the task-local's `RefCell` and wrapper future cost
//! hundreds on every request.

use std::cell::Cell;
use std::sync::Arc;
use std::thread::LocalKey;

use super::RequestScope;
use crate::outcome::Outcome;

/// A slot for the scope that is current on this thread.
pub(crate) type Slot = LocalKey<Cell<Option<Arc<RequestScope>>>>;

thread_local! {
    /// Set by `AfterLayer` while the inner service's future is polled or dropped.
    pub(crate) static REQUEST: Cell<Option<Arc<RequestScope>>> = const { Cell::new(None) };
    /// Set by the executor while a task is polled or dropped. Tasks are spawned, so a
    /// running task's scope is always outside any request scope set within it:
    /// `REQUEST`, when set, is the innermost.
    pub(crate) static RUNNING: Cell<Option<Arc<RequestScope>>> = const { Cell::new(None) };
}

/// Runs `f` with `scope` current in `slot`, and puts back what was there before,
/// also when `f` unwinds, so scopes nest as the futures carrying them do. On a thread
/// whose thread-locals are already gone, `f` runs with no scope current.
pub(crate) fn enter<R>(slot: &'static Slot, scope: &Arc<RequestScope>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous scope back on drop.
    struct Restore {
        slot: &'static Slot,
        previous: Option<Arc<RequestScope>>,
    }

    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.previous.take();
            // Ours comes back out, dropped here.
            let _ = self.slot.try_with(|current| current.replace(previous));
        }
    }

    let Ok(previous) = slot.try_with(|current| current.replace(Some(scope.clone()))) else {
        return f();
    };
    let _restore = Restore { slot, previous };
    f()
}

/// A clone of the scope current in `slot`.
fn get(slot: &'static Slot) -> Option<Arc<RequestScope>> {
    slot.try_with(|current| {
        let scope = current.take();
        current.set(scope.clone());
        scope
    })
    .ok()
    .flatten()
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
    layer_scope().or_else(|| get(&RUNNING))
}

/// The request scope `AfterLayer` set, if this code runs inside one.
pub(crate) fn layer_scope() -> Option<Arc<RequestScope>> {
    get(&REQUEST)
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
    if layer_scope().is_some() {
        return None;
    }
    get(&RUNNING).and_then(|scope| scope.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(path: &str) -> Arc<RequestScope> {
        Arc::new(RequestScope::for_test(path))
    }

    fn path(scope: Option<Arc<RequestScope>>) -> Option<String> {
        scope.map(|scope| scope.request.path.as_str().to_owned())
    }

    #[test]
    fn entered_scopes_nest_and_the_outer_one_comes_back() {
        let (outer, inner) = (scope("/outer"), scope("/inner"));
        assert!(current().is_none());
        enter(&REQUEST, &outer, || {
            assert_eq!(path(current()).as_deref(), Some("/outer"));
            enter(&REQUEST, &inner, || {
                assert_eq!(path(current()).as_deref(), Some("/inner"));
            });
            assert_eq!(path(current()).as_deref(), Some("/outer"));
        });
        assert!(current().is_none());
        // Only the callers' references are left: the slot let go of its clones.
        assert_eq!(Arc::strong_count(&outer), 1);
        assert_eq!(Arc::strong_count(&inner), 1);
    }

    #[test]
    fn a_panic_inside_puts_the_previous_scope_back() {
        let (outer, inner) = (scope("/outer"), scope("/inner"));
        enter(&REQUEST, &outer, || {
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                enter(&REQUEST, &inner, || panic!("handler panicked"));
            }));
            assert!(unwound.is_err());
            assert_eq!(path(current()).as_deref(), Some("/outer"));
        });
        assert!(current().is_none());
        assert_eq!(Arc::strong_count(&inner), 1);
    }

    #[test]
    fn a_request_served_inside_a_running_task_is_the_current_scope() {
        let (task, request) = (scope("/task"), scope("/request"));
        enter(&RUNNING, &task, || {
            assert_eq!(path(current()).as_deref(), Some("/task"));
            enter(&REQUEST, &request, || {
                assert_eq!(path(current()).as_deref(), Some("/request"));
                // That request's response is not out yet.
                assert!(outcome().is_none());
            });
            assert_eq!(path(current()).as_deref(), Some("/task"));
        });
    }
}
