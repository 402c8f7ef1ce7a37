//! Running one task: its span, panic isolation, timeout, cancellation, and how it
//! ended, which it reports back to the runtime (the runtime starts tasks here, and
//! this file reports their ends there: the two run tasks together).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::job::{BoxFuture, Job, forget_panic};
use crate::log::{self, Cancelled, Event};
#[cfg(feature = "metrics")]
use crate::metrics;
use crate::runtime::AfterRuntime;
use crate::scope::{RUNNING, RequestScope, enter};
use crate::stats::End;
use crate::task::Site;

/// Counts the task as cancelled if it is dropped before it ends, as when the tokio
/// runtime itself shuts down, so no task goes uncounted.
struct Counted {
    scope: Arc<RequestScope>,
    site: Site,
    end: Option<End>,
}

impl Counted {
    /// Logs `event` for this task, as a child of `parent`.
    fn log(&self, parent: &tracing::Span, event: Event<'_>) {
        log::task_event(parent, &self.scope.request, self.site, event);
    }

    /// Logs why the task was stopped, and how it ended.
    fn interrupted(&self, span: &tracing::Span, interrupt: Interrupt) -> End {
        match interrupt {
            Interrupt::TimedOut(limit) => {
                self.log(span, Event::TimedOut(limit));
                End::TimedOut
            }
            Interrupt::Cancelled => {
                let request = &self.scope.request.span;
                self.log(request, Event::Cancelled(Cancelled::RunningAtDeadline));
                End::Cancelled
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.scope.runtime.finish(
            self.end.unwrap_or(End::Cancelled),
            self.site,
            &self.scope.request,
        );
    }
}

/// The future a task runs as: its future is polled inside the task's span, with the
/// request's scope current in `RUNNING` (so `after()` in it registers nested tasks)
/// and panics caught. Its guard exists before the first poll, so a future tokio drops
/// unpolled (spawned onto a runtime that is shutting down) is still counted.
///
/// Written out rather than as an `async fn`: it is moved into tokio's task cell, so
/// it is kept small, and the timer and the cancellation wait are built (in a box)
/// only for a task that does not finish on its first poll.
pub(crate) struct Run {
    task: Option<BoxFuture>,
    span: Option<tracing::Span>,
    interrupted: Option<Interrupted>,
    counted: Counted,
    /// When the task was first polled, for the duration histogram.
    #[cfg(feature = "metrics")]
    started: Option<std::time::Instant>,
}

impl Drop for Run {
    fn drop(&mut self) {
        // The task's future drops as it was polled, inside its span (as with
        // `tracing::Instrumented`) and with its scope current (an `after()` in its
        // `Drop` registers too): when it timed out, was cancelled at the deadline, or
        // is dropped mid-flight by tokio. (One that ended was dropped by its last
        // poll.) Then `counted` reports.
        if let Some(task) = self.task.take() {
            let _entered = self.span.as_ref().map(tracing::Span::enter);
            enter(&RUNNING, &self.counted.scope, || {
                // A captured value may panic in its `Drop`: contained, so the end is
                // still counted and tokio sees no panic.
                if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(task))) {
                    forget_panic(panic);
                }
            });
        }
    }
}

/// Why a task that was still waiting stopped.
enum Interrupt {
    /// Its timeout, of this length, passed.
    TimedOut(std::time::Duration),
    Cancelled,
}

/// What a task that did not finish on its first poll also waits on: its timeout,
/// if it has one, and the shutdown deadline.
type Interrupted = Pin<Box<dyn Future<Output = Interrupt> + Send>>;

/// Waits for the task's timeout or the shutdown deadline, whichever comes first.
///
/// Unconstrained by tokio's cooperative budget: it is polled right after the task,
/// which may have spent the whole budget (a task draining a busy channel does, on
/// every poll), and a budget-aware `select!` would then never look at the timer or
/// the deadline.
fn interrupted(runtime: AfterRuntime, timeout: Option<std::time::Duration>) -> Interrupted {
    Box::pin(tokio::task::unconstrained(async move {
        let cancelled = runtime.cancelled().cancelled();
        match timeout {
            Some(limit) => tokio::select! {
                biased;
                () = tokio::time::sleep(limit) => Interrupt::TimedOut(limit),
                () = cancelled => Interrupt::Cancelled,
            },
            None => {
                cancelled.await;
                Interrupt::Cancelled
            }
        }
    }))
}

/// The future a task runs as.
pub(crate) fn run(scope: Arc<RequestScope>, job: Job) -> Run {
    let Job { future, site } = job;
    Run {
        task: Some(future),
        span: None,
        interrupted: None,
        counted: Counted {
            scope,
            site,
            end: None,
        },
        #[cfg(feature = "metrics")]
        started: None,
    }
}

impl Future for Run {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let counted = &this.counted;
        #[cfg(feature = "metrics")]
        this.started.get_or_insert_with(std::time::Instant::now);
        if this.task.is_none() || counted.end.is_some() {
            // Polled after it ended: tokio never does.
            return Poll::Ready(());
        }
        let span = this.span.get_or_insert_with(|| task_span(counted));
        let task = &mut this.task;
        let polled = {
            let _entered = span.enter();
            enter(&RUNNING, &counted.scope, || {
                let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    task.as_mut()
                        .map_or(Poll::Ready(None), |task| task.as_mut().poll(cx))
                }));
                if !matches!(polled, Ok(Poll::Pending)) {
                    // It ended: dropped now, while its span and scope are current
                    // anyway. A panic in a `Drop` of its captures is contained, and
                    // does not change how it ended.
                    let task = task.take();
                    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| drop(task))) {
                        forget_panic(panic);
                    }
                }
                polled
            })
        };
        let end = match polled {
            Ok(Poll::Ready(None)) => End::Succeeded,
            Ok(Poll::Ready(Some(error))) => {
                counted.log(span, Event::Failed(&error));
                End::Failed
            }
            Err(panic) => {
                counted.log(span, Event::Panicked(panic_message(&*panic)));
                // A payload whose own `Drop` panics would unwind out of this poll,
                // past the task's count and span.
                forget_panic(panic);
                End::Panicked
            }
            Ok(Poll::Pending) => {
                // Most tasks finish on their first poll; only the others need the
                // timer and the cancellation token. The task was polled first, so a
                // task that is ready wins.
                let runtime = &counted.scope.runtime;
                let interrupted = this.interrupted.get_or_insert_with(|| {
                    // The task's own timeout, else the runtime's.
                    let own = task.as_ref().and_then(|task| task.timeout());
                    interrupted(runtime.clone(), own.or_else(|| runtime.task_timeout()))
                });
                let interrupt = ready!(interrupted.as_mut().poll(cx));
                counted.interrupted(span, interrupt)
            }
        };
        #[cfg(feature = "metrics")]
        if let Some(started) = this.started {
            metrics::task_duration(end, this.counted.site.name, started.elapsed());
        }
        // tokio drops this future right after, and `counted` reports the end. (A task
        // that timed out or was cancelled is dropped then, inside its span:
        // `Drop for Run`.)
        this.counted.end = Some(end);
        Poll::Ready(())
    }
}

/// The task's span. With no subscriber at all, building even a disabled span costs
/// more than the rest of a short task (with tracing's `log` feature it records its
/// fields). Otherwise the subscriber decides, by this span's own name and fields.
fn task_span(counted: &Counted) -> tracing::Span {
    let request = &counted.scope.request;
    if !tracing::dispatcher::has_been_set() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        parent: None,
        "after_task",
        method = %request.method,
        path = request.path.as_str(),
        task = counted.site.name,
        location = %counted.site.location,
    );
    span.follows_from(&request.span);
    span
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}
