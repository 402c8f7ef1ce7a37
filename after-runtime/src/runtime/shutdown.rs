//! [`AfterRuntime::shutdown`], phase by phase:
//!
//! 1. **Begin**: the runtime drains (new tasks are still taken), and the deadline is
//!    the earliest any caller gave.
//! 2. **Drain**: wait until no request is in flight and no task runs or waits, or
//!    the deadline; then the runtime is closed to new tasks.
//! 3. **Cancel**: drop the tasks waiting for a slot and those of unfinished
//!    responses, unrun; cancel the running ones and wait, bounded, for them to stop.
//! 4. **Report** the counts and where each cancelled task was registered, and stop
//!    the runtime's own threads, if it has any.
//!
//! Every caller runs every phase; what one caller took, the others find gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::AfterRuntime;
use crate::log::{Cancelled, Event};
use crate::scope::RequestScope;
use crate::stats::ShutdownReport;

/// How long `shutdown` waits, after cancelling at the deadline, for cancelled tasks
/// to reach their next poll.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn run(runtime: &AfterRuntime, grace: Duration) -> ShutdownReport {
    if !begin(runtime, Instant::now().checked_add(grace)) {
        drain(runtime).await;
        cancel_queued(runtime);
        cancel_unfinished(runtime);
        cancel_running(runtime).await;
        runtime.update(|state| state.done());
    }
    let report = runtime.shared.state().report();
    runtime.publish_gauges();
    if let Some(threads) = &runtime.shared.own_threads {
        // Nothing runs there any more, unless a task blocks its thread: then do
        // not wait for it again.
        threads.stop(report.stats.running == 0).await;
    }
    report
}

/// Begins (or joins) the drain; returns whether the runtime was already done.
fn begin(runtime: &AfterRuntime, deadline: Option<Instant>) -> bool {
    let done = runtime.update(|state| state.begin_shutdown(deadline));
    if !done {
        runtime.shared.tracker.close();
        // A caller already draining may now have an earlier deadline.
        runtime.shared.deadline_moved.notify_waiters();
    }
    done
}

/// Waits until no request is in flight and no task is running or waiting, or the
/// earliest deadline passes; then closes the runtime to new tasks.
async fn drain(runtime: &AfterRuntime) {
    let shared = &runtime.shared;
    loop {
        let moved = shared.deadline_moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        let deadline = {
            let state = shared.state();
            if state.is_closed() {
                return;
            }
            state.deadline()
        };
        tokio::select! {
            () = async {
                // Requests in flight (tracker tokens), then running and queued tasks.
                shared.tracker.wait().await;
                no_task_running(runtime).await;
            } => {}
            () = sleep_until(deadline) => {}
            () = moved => continue,
        }
        // Either may have started again while the other was awaited (a request
        // arrived, a task registered a nested one): only close once nothing is in
        // flight, or at the deadline.
        let requests_idle = shared.tracker.is_empty();
        if shared
            .state()
            .close_if_drained(requests_idle, Instant::now())
        {
            return;
        }
    }
}

/// At the deadline: drops the tasks waiting for a slot, unrun.
fn cancel_queued(runtime: &AfterRuntime) {
    for (scope, job) in runtime.update(|state| state.cancel_queued()) {
        scope.log(job.site, Event::Cancelled(Cancelled::QueuedAtDeadline));
        job.drop_unrun(&scope.request);
    }
}

/// At the deadline: drops the tasks of requests whose responses are still not
/// finished, unrun. Their scopes count as released, so a response finishing later
/// starts nothing.
fn cancel_unfinished(runtime: &AfterRuntime) {
    let open: Vec<Arc<RequestScope>> = runtime.update(|state| state.take_unfinished());
    for scope in open {
        let jobs = scope.cancel_waiting();
        runtime.update(|state| state.cancel_unfinished(&scope.request, &jobs));
        for job in jobs {
            scope.log(job.site, Event::Cancelled(Cancelled::UnfinishedAtDeadline));
            job.drop_unrun(&scope.request);
        }
    }
}

/// At the deadline: cancels the running tasks at their next poll, and waits for
/// them to stop. One blocking its thread never does: stop waiting after a bound,
/// and the report counts it as still running.
async fn cancel_running(runtime: &AfterRuntime) {
    if runtime.stats().running > 0 {
        runtime.shared.cancel.cancel();
        let _ = tokio::time::timeout(CANCEL_WAIT, no_task_running(runtime)).await;
    }
}

/// Resolves once no task is running (so none is queued either: the queue only
/// fills while every slot is taken). Woken by `finish` outside the running phase.
async fn no_task_running(runtime: &AfterRuntime) {
    loop {
        let idle = runtime.shared.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if runtime.stats().running == 0 {
            return;
        }
        idle.await;
    }
}

/// Sleeps until `deadline`; never returns without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
