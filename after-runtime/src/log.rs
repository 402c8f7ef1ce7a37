//! The log line of every task event that is not a plain success: one function, one
//! field set, so every event reads the same under any subscriber.
//!
//! A leaf: it imports nothing of the engine. Each event is logged at error level
//! with the request's `method` and `path` and the task's `location` on the event
//! itself (not only on a span, which a subscriber may not show), plus the event's
//! own field: `error`, `panic` or `timeout`.

use std::fmt;
use std::time::Duration;

use tracing::field::{DebugValue, DisplayValue, debug, display};

use crate::error::AfterError;
use crate::request::RequestInfo;
use crate::task::Site;

/// Something that happened to a task, worth an error-level line.
#[derive(Clone, Copy)]
pub(crate) enum Event<'a> {
    /// The task ended in `Err`, with this message.
    Failed(&'a dyn fmt::Display),
    /// The task panicked, with this message.
    Panicked(&'a str),
    /// The task ran past its timeout.
    TimedOut(Duration),
    /// The task was cancelled, or dropped unrun, for this reason.
    Cancelled(Cancelled),
    /// The registration was refused.
    Rejected(&'a AfterError),
    /// The task waited for a slot and was dropped unrun for a newer one.
    Shed,
    /// A value the task captured panicked while the task was dropped unrun.
    DropPanicked,
}

/// Why a task was cancelled: each reason is one way a task meets a closed runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// It waited for a slot when the shutdown deadline passed.
    QueuedAtDeadline,
    /// Its response had not finished when the shutdown deadline passed.
    UnfinishedAtDeadline,
    /// It was running when the shutdown deadline passed.
    RunningAtDeadline,
    /// Its response finished after the runtime had shut down.
    ReleasedAfterShutdown,
    /// Its request was served outside any tokio runtime: there is none to run it on.
    NoTokioRuntime,
}

impl Cancelled {
    fn why(self) -> &'static str {
        match self {
            Cancelled::QueuedAtDeadline => "it was still waiting at the shutdown deadline",
            Cancelled::UnfinishedAtDeadline => {
                "its response had not finished at the shutdown deadline"
            }
            Cancelled::RunningAtDeadline => "it was still running at the shutdown deadline",
            Cancelled::ReleasedAfterShutdown => "its response finished after shutdown",
            Cancelled::NoTokioRuntime => "its request was not served on a tokio runtime",
        }
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Failed(_) => f.write_str("after task failed"),
            Event::Panicked(_) => f.write_str("after task panicked"),
            Event::TimedOut(_) => f.write_str("after task timed out"),
            Event::Cancelled(why) => write!(f, "after task cancelled: {}", why.why()),
            Event::Rejected(_) => f.write_str("after task rejected"),
            Event::Shed => f.write_str(
                "after task rejected: it waited for a slot when `max_pending` was reached, \
                 and `OverloadPolicy::ShedOldest` dropped it for a newer task",
            ),
            Event::DropPanicked => {
                f.write_str("a value captured by an after task panicked while being dropped unrun")
            }
        }
    }
}

impl<'a> Event<'a> {
    fn error(&self) -> Option<DisplayValue<&'a dyn fmt::Display>> {
        match *self {
            Event::Failed(error) => Some(display(error)),
            Event::Rejected(error) => Some(display(error as &dyn fmt::Display)),
            _ => None,
        }
    }

    fn panic(&self) -> Option<&'a str> {
        match *self {
            Event::Panicked(message) => Some(message),
            _ => None,
        }
    }

    fn timeout(&self) -> Option<DebugValue<Duration>> {
        match *self {
            Event::TimedOut(limit) => Some(debug(limit)),
            _ => None,
        }
    }
}

/// Logs `event` for the task registered at `site` by `request`, as a child of
/// `parent`: the task's span while it runs, else its request's span.
///
/// Cold: called only when a task fails or cannot run, so it stays out of the way of
/// the code that runs tasks.
#[cold]
pub(crate) fn task_event(
    parent: &tracing::Span,
    request: &RequestInfo,
    site: Site,
    event: Event<'_>,
) {
    // Fields that are `None` are not recorded: each line carries only its own. The
    // target is the one these lines had when the executor logged them, with the
    // `after_task` span: filters written against it keep working.
    tracing::error!(
        target: "after_runtime::executor",
        parent: parent,
        method = %request.method,
        path = request.path.as_str(),
        task = site.name,
        location = %site.location,
        error = event.error(),
        panic = event.panic(),
        timeout = event.timeout(),
        "{event}",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AfterErrorKind;

    /// The event's own fields, as the one log line records them.
    fn own_fields(event: Event<'_>) -> Vec<String> {
        let mut fields = Vec::new();
        if let Some(error) = event.error() {
            fields.push(format!("error={error:?}"));
        }
        if let Some(panic) = event.panic() {
            fields.push(format!("panic={panic}"));
        }
        if let Some(timeout) = event.timeout() {
            fields.push(format!("timeout={timeout:?}"));
        }
        fields
    }

    #[test]
    fn each_event_reads_as_before_and_carries_only_its_own_field() {
        let failure = "the webhook answered 503";
        let refused = AfterError::new(AfterErrorKind::ShutDown);
        let cases = [
            (
                Event::Failed(&failure),
                "after task failed",
                vec!["error=the webhook answered 503".to_owned()],
            ),
            (
                Event::Panicked("index out of bounds"),
                "after task panicked",
                vec!["panic=index out of bounds".to_owned()],
            ),
            (
                Event::TimedOut(Duration::from_secs(5)),
                "after task timed out",
                vec!["timeout=5s".to_owned()],
            ),
            (
                Event::Cancelled(Cancelled::RunningAtDeadline),
                "after task cancelled: it was still running at the shutdown deadline",
                vec![],
            ),
            (
                Event::Rejected(&refused),
                "after task rejected",
                vec![format!("error={refused}")],
            ),
            (
                Event::DropPanicked,
                "a value captured by an after task panicked while being dropped unrun",
                vec![],
            ),
        ];
        for (event, message, fields) in cases {
            assert_eq!(event.to_string(), message);
            assert_eq!(own_fields(event), fields, "{message}");
        }
        let shed = Event::Shed.to_string();
        assert!(shed.starts_with("after task rejected: "), "{shed}");
        assert!(own_fields(Event::Shed).is_empty());
    }

    #[test]
    fn every_reason_to_cancel_says_why() {
        let reasons = [
            Cancelled::QueuedAtDeadline,
            Cancelled::UnfinishedAtDeadline,
            Cancelled::RunningAtDeadline,
            Cancelled::ReleasedAfterShutdown,
            Cancelled::NoTokioRuntime,
        ];
        let mut seen = std::collections::HashSet::new();
        for reason in reasons {
            let line = Event::Cancelled(reason).to_string();
            assert!(line.starts_with("after task cancelled: it"), "{line}");
            assert!(seen.insert(line), "two reasons read the same");
        }
    }
}
