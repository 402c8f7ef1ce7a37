//! What became of the response, as seen by the tasks it registered. The types only:
//! [`outcome()`](crate::outcome()), which reads the running task's, is with the other
//! task-locals in `scope/current.rs`.
//!
//! A leaf: it imports nothing of the engine.

use std::time::Duration;

use http::StatusCode;

/// What became of the response whose request registered the running task.
///
/// Read it with [`outcome()`](crate::outcome()) inside a task. With
/// [`AfterLayer`](crate::AfterLayer) it knows the status, the time from request to
/// response head, and whether the body reached the client; without the layer only
/// that the handler ended.
///
/// ```
/// use after_runtime::{Delivery, Outcome};
///
/// fn audit(outcome: Outcome) -> String {
///     match (outcome.status(), outcome.delivery()) {
///         (Some(status), Delivery::Delivered) => format!("delivered {status}"),
///         (_, Delivery::Aborted) => "client went away".to_owned(),
///         (_, Delivery::NotProduced) => "handler failed before answering".to_owned(),
///         _ => "unknown".to_owned(),
///     }
/// }
/// # let _ = audit;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub(crate) status: Option<StatusCode>,
    pub(crate) time_to_response: Option<Duration>,
    pub(crate) delivery: Delivery,
}

/// Whether the response reached the client.
///
/// ```
/// use after_runtime::{outcome, Delivery};
///
/// // Inside an after task:
/// let retry_later = outcome().is_some_and(|o| o.delivery() == Delivery::Aborted);
/// # let _ = retry_later;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The whole body was handed to the server, or the response has no body on the
    /// wire (`HEAD`, `204`, `304`). Not proof that the client read it: the server
    /// may still be writing, or the connection may fail after the last frame.
    Delivered,
    /// The body was dropped before its end: the client went away, or the body failed.
    Aborted,
    /// No response was produced: the handler panicked (without `CatchPanicLayer`),
    /// returned a service error, or was cancelled because the client went away.
    NotProduced,
    /// The handler ended, but no [`AfterLayer`](crate::AfterLayer) watched the response.
    Unobserved,
}

impl Outcome {
    pub(crate) fn new(delivery: Delivery) -> Self {
        Outcome {
            status: None,
            time_to_response: None,
            delivery,
        }
    }

    /// The response status, when [`AfterLayer`](crate::AfterLayer) saw a response.
    ///
    /// ```
    /// # use after_runtime::Outcome;
    /// fn was_error(outcome: &Outcome) -> bool {
    ///     outcome.status().is_some_and(|s| s.is_server_error())
    /// }
    /// # let _ = was_error;
    /// ```
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// Time from the request entering the layer to the response head leaving it.
    ///
    /// ```
    /// # use after_runtime::Outcome;
    /// fn slow(outcome: &Outcome) -> bool {
    ///     outcome.time_to_response().is_some_and(|t| t.as_millis() > 500)
    /// }
    /// # let _ = slow;
    /// ```
    pub fn time_to_response(&self) -> Option<Duration> {
        self.time_to_response
    }

    /// Whether the response reached the client.
    ///
    /// ```
    /// # use after_runtime::{Delivery, Outcome};
    /// fn delivered(outcome: &Outcome) -> bool {
    ///     outcome.delivery() == Delivery::Delivered
    /// }
    /// # let _ = delivered;
    /// ```
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }
}
