//! Running one task: its span, panic isolation, timeout, cancellation, and the log
//! line for every way it can end.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use crate::task::Location;
use std::sync::Arc;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::AfterError;
#[cfg(feature = "metrics")]
use crate::metrics;
use crate::runtime::AfterRuntime;
use crate::scope::{RUNNING, RequestScope};
use crate::task::Job;

/// How a running task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Succeeded,
    Failed,
    Panicked,
    TimedOut,
    Cancelled,
}

/// Counts the task as cancelled if it is dropped before it ends, as when the tokio
/// runtime itself shuts down, so no task goes uncounted.
struct Counted {
    runtime: AfterRuntime,
    location: Location,
    end: Option<End>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.runtime
            .finish(self.end.unwrap_or(End::Cancelled), self.location);
    }
}

/// The future a task runs as. Its guard exists before the first poll, so a future
/// tokio drops unpolled (spawned onto a runtime that is shutting down) is still
/// counted.
pub(crate) fn run(
    runtime: AfterRuntime,
    scope: Arc<RequestScope>,
    job: Job,
) -> impl Future<Output = ()> + Send {
    let counted = Counted {
        runtime: runtime.clone(),
        location: job.location,
        end: None,
    };
    run_counted(runtime, scope, job, counted)
}

async fn run_counted(
    runtime: AfterRuntime,
    scope: Arc<RequestScope>,
    job: Job,
    mut counted: Counted,
) {
    let Job { future, location } = job;
    let span = tracing::info_span!(
        parent: None,
        "after_task",
        method = %scope.method,
        path = scope.path.as_str(),
        location = %location,
    );
    span.follows_from(&scope.span);

    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let task = RUNNING
        .scope(scope.clone(), AssertUnwindSafe(future).catch_unwind())
        .instrument(span.clone());
    let timed = async {
        // Most tasks finish on their first poll; arm the timer only for the rest, so
        // they never touch the timer wheel.
        let mut task = std::pin::pin!(task);
        let first = std::future::poll_fn(|cx| Poll::Ready(task.as_mut().poll(cx))).await;
        match (first, runtime.task_timeout()) {
            (Poll::Ready(result), _) => Some(result),
            (Poll::Pending, Some(limit)) => tokio::time::timeout(limit, task).await.ok(),
            (Poll::Pending, None) => Some(task.await),
        }
    };
    // The task is polled first: one that ends on its first poll never registers with
    // the shared cancellation token.
    let end = tokio::select! {
        biased;
        result = timed => match result {
            Some(Ok(None)) => End::Succeeded,
            Some(Ok(Some(error))) => {
                tracing::error!(
                    parent: &span,
                    method = %scope.method,
                    path = scope.path.as_str(),
                    location = %location,
                    %error,
                    "after task failed",
                );
                End::Failed
            }
            Some(Err(panic)) => {
                let message = panic_message(&*panic);
                tracing::error!(
                    parent: &span,
                    method = %scope.method,
                    path = scope.path.as_str(),
                    location = %location,
                    panic = message,
                    "after task panicked",
                );
                End::Panicked
            }
            None => {
                tracing::error!(
                    parent: &span,
                    method = %scope.method,
                    path = scope.path.as_str(),
                    location = %location,
                    timeout = ?runtime.task_timeout().unwrap_or_default(),
                    "after task timed out",
                );
                End::TimedOut
            }
        },
        () = runtime.cancelled().cancelled() => {
            log_cancelled(&scope, location, "it was still running at the shutdown deadline");
            End::Cancelled
        }
    };
    #[cfg(feature = "metrics")]
    metrics::task_duration(end, started.elapsed());
    counted.end = Some(end);
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}

pub(crate) fn log_cancelled(scope: &RequestScope, location: Location, why: &str) {
    tracing::error!(
        parent: &scope.span,
        method = %scope.method,
        path = scope.path.as_str(),
        location = %location,
        "after task cancelled: {why}",
    );
}

pub(crate) fn log_rejected(scope: &RequestScope, location: Location, error: &AfterError) {
    tracing::error!(
        parent: &scope.span,
        method = %scope.method,
        path = scope.path.as_str(),
        location = %location,
        %error,
        "after task rejected",
    );
}
