//! Running one task: its span, panic isolation, timeout, cancellation, and the log
//! line for every way it can end.

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::AfterError;
#[cfg(feature = "metrics")]
use crate::metrics;
use crate::runtime::AfterRuntime;
use crate::scope::{RUNNING, RequestScope};
use crate::task::{BoxFuture, Job, Location};

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
    scope: Arc<RequestScope>,
    location: Location,
    end: Option<End>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.scope
            .runtime
            .finish(self.end.unwrap_or(End::Cancelled), self.location);
    }
}

/// The future a task runs as. Its guard exists before the first poll, so a future
/// tokio drops unpolled (spawned onto a runtime that is shutting down) is still
/// counted.
pub(crate) fn run(scope: Arc<RequestScope>, job: Job) -> impl Future<Output = ()> + Send {
    let Job { future, location } = job;
    let counted = Counted {
        scope,
        location,
        end: None,
    };
    run_counted(future, counted)
}

async fn run_counted(future: BoxFuture, mut counted: Counted) {
    let scope = &counted.scope;
    let location = counted.location;
    // With no subscriber at all, building even a disabled span costs more than the
    // rest of a short task (with tracing's `log` feature it records its fields).
    // Otherwise the subscriber decides, by this span's own name and fields.
    let span = if tracing::dispatcher::has_been_set() {
        tracing::info_span!(
            parent: None,
            "after_task",
            method = %scope.method,
            path = scope.path.as_str(),
            location = %location,
        )
    } else {
        tracing::Span::none()
    };
    span.follows_from(&scope.span);

    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let mut task = pin!(
        RUNNING
            .scope(Arc::clone(scope), AssertUnwindSafe(future).catch_unwind())
            .instrument(span)
    );
    // Most tasks finish on their first poll. Only the others need the timer and the
    // cancellation token, and they wait in a box, so the future every task is
    // spawned as stays small (it is moved into tokio's task cell).
    let result = match poll_fn(|cx| Poll::Ready(task.as_mut().poll(cx))).await {
        Poll::Ready(result) => Ok(Some(result)),
        Poll::Pending => Box::pin(wait(task.as_mut(), &scope.runtime)).await,
    };
    let span = task.span();
    let end = match result {
        Ok(Some(Ok(None))) => End::Succeeded,
        Ok(Some(Ok(Some(error)))) => {
            tracing::error!(
                parent: span,
                method = %scope.method,
                path = scope.path.as_str(),
                location = %location,
                %error,
                "after task failed",
            );
            End::Failed
        }
        Ok(Some(Err(panic))) => {
            let message = panic_message(&*panic);
            tracing::error!(
                parent: span,
                method = %scope.method,
                path = scope.path.as_str(),
                location = %location,
                panic = message,
                "after task panicked",
            );
            End::Panicked
        }
        Ok(None) => {
            tracing::error!(
                parent: span,
                method = %scope.method,
                path = scope.path.as_str(),
                location = %location,
                timeout = ?scope.runtime.task_timeout().unwrap_or_default(),
                "after task timed out",
            );
            End::TimedOut
        }
        Err(Cancelled) => {
            log_cancelled(
                scope,
                location,
                "it was still running at the shutdown deadline",
            );
            End::Cancelled
        }
    };
    #[cfg(feature = "metrics")]
    metrics::task_duration(end, started.elapsed());
    counted.end = Some(end);
}

/// The shutdown deadline cancelled a running task.
struct Cancelled;

/// Waits for a task that did not finish on its first poll: until it ends (`Some`),
/// overruns the timeout (`None`), or is cancelled at the shutdown deadline. The task
/// is polled before the token, so a task that is ready wins.
async fn wait<F: Future>(
    task: Pin<&mut F>,
    runtime: &AfterRuntime,
) -> Result<Option<F::Output>, Cancelled> {
    let cancelled = runtime.cancelled().cancelled();
    match runtime.task_timeout() {
        Some(limit) => tokio::select! {
            biased;
            result = tokio::time::timeout(limit, task) => Ok(result.ok()),
            () = cancelled => Err(Cancelled),
        },
        None => tokio::select! {
            biased;
            result = task => Ok(Some(result)),
            () = cancelled => Err(Cancelled),
        },
    }
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
