//! The task counts and durations, published through the [`metrics`] facade
//! (feature `metrics`), to whatever recorder the application installs: a
//! Prometheus exporter, StatsD, OpenTelemetry.
//!
//! | name | kind | labels | what it counts |
//! |---|---|---|---|
//! | `after_tasks_registered_total` | counter | | every registration, refused ones too |
//! | `after_tasks_ended_total` | counter | `end`: `succeeded`, `failed`, `panicked`, `timed_out`, `rejected`, `cancelled` | each task once, as it ends |
//! | `after_tasks_pending` | gauge | | tasks waiting for their response or a slot |
//! | `after_tasks_running` | gauge | | tasks running now |
//! | `after_task_duration_seconds` | histogram | `end`, and for a named task `task`: its [name](crate::TaskOptions::name) | from a task's start to its end |
//!
//! They are [`Stats`] as a time series: `registered` minus the sum of
//! `ended` is `pending` plus `running`. Changes are published as the differences
//! between consistent states, so counters never go backwards and gauges never leave
//! `0..=max_pending` (or `0..=max_concurrency`), however threads interleave; gauges
//! are published as increments, so several runtimes in one process add up.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use after_runtime::metrics;
//!
//! // A Prometheus query for the share of after work that fails:
//! let query = format!(
//!     r#"rate({}{{end="failed"}}[5m]) / rate({}[5m])"#,
//!     metrics::TASKS_ENDED, metrics::TASKS_ENDED,
//! );
//! assert!(query.starts_with("rate(after_tasks_ended_total"));
//! # }
//! ```
//!
//! `examples/metrics.rs` in the repository serves them as Prometheus text.

/// The counter of registrations: `after_tasks_registered_total`.
///
/// ```
/// assert_eq!(after_runtime::metrics::TASKS_REGISTERED, "after_tasks_registered_total");
/// ```
#[cfg(feature = "metrics")]
pub const TASKS_REGISTERED: &str = "after_tasks_registered_total";

/// The counter of ended tasks, labelled `end`: `after_tasks_ended_total`.
///
/// ```
/// assert_eq!(after_runtime::metrics::TASKS_ENDED, "after_tasks_ended_total");
/// ```
#[cfg(feature = "metrics")]
pub const TASKS_ENDED: &str = "after_tasks_ended_total";

/// The gauge of pending tasks: `after_tasks_pending`.
///
/// ```
/// assert_eq!(after_runtime::metrics::TASKS_PENDING, "after_tasks_pending");
/// ```
#[cfg(feature = "metrics")]
pub const TASKS_PENDING: &str = "after_tasks_pending";

/// The gauge of running tasks: `after_tasks_running`.
///
/// ```
/// assert_eq!(after_runtime::metrics::TASKS_RUNNING, "after_tasks_running");
/// ```
#[cfg(feature = "metrics")]
pub const TASKS_RUNNING: &str = "after_tasks_running";

/// The histogram of task durations in seconds, labelled `end` and `task`:
/// `after_task_duration_seconds`.
///
/// ```
/// assert_eq!(after_runtime::metrics::TASK_DURATION, "after_task_duration_seconds");
/// ```
#[cfg(feature = "metrics")]
pub const TASK_DURATION: &str = "after_task_duration_seconds";

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(feature = "metrics")]
use std::sync::{Mutex, PoisonError, TryLockError};
#[cfg(feature = "metrics")]
use std::time::Duration;

#[cfg(feature = "metrics")]
use crate::stats::End;
use crate::stats::Stats;

/// Publishes the counters' growth between two consistent states: counters only
/// grow, so their increments may land in any order.
#[cfg(feature = "metrics")]
fn publish_counters(before: &Stats, after: &Stats) {
    let grew = |a: u64, b: u64| b.saturating_sub(a);
    let registered = grew(before.registered, after.registered);
    if registered > 0 {
        metrics::counter!(TASKS_REGISTERED).increment(registered);
    }
    for (end, a, b) in [
        ("succeeded", before.succeeded, after.succeeded),
        ("failed", before.failed, after.failed),
        ("panicked", before.panicked, after.panicked),
        ("timed_out", before.timed_out, after.timed_out),
        ("rejected", before.rejected, after.rejected),
        ("cancelled", before.cancelled, after.cancelled),
    ] {
        if b > a {
            metrics::counter!(TASKS_ENDED, "end" => end).increment(b - a);
        }
    }
}

/// The gauges' changes not yet published, added under the runtime's lock in the
/// order the state changed, and published by one thread at a time, under a lock of
/// their own, in that order: published out of order, a task's `-1` could land
/// before its `+1` and a scrape see `-1`. Increments rather than absolute values, so
/// several runtimes add up.
///
/// A state change never waits to publish: if another thread holds the lock, that
/// thread publishes the change too (it checks again after letting go). `shutdown`
/// and `wait_idle` do wait ([`flush`](Gauges::flush)), so once they return a scrape
/// reads what `stats()` does.
#[cfg(feature = "metrics")]
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pending: AtomicI64,
    running: AtomicI64,
    publishing: Mutex<()>,
}

#[cfg(feature = "metrics")]
impl Gauges {
    /// Called under the runtime's lock.
    fn add(&self, before: &Stats, after: &Stats) {
        let delta = |a: u64, b: u64| b as i64 - a as i64;
        if before.pending != after.pending {
            let pending = delta(before.pending, after.pending);
            self.pending.fetch_add(pending, Ordering::SeqCst);
        }
        if before.running != after.running {
            let running = delta(before.running, after.running);
            self.running.fetch_add(running, Ordering::SeqCst);
        }
    }

    /// Publishes what has been added, unless another thread is publishing: it
    /// publishes this too. A recorder that registers a task lands here again, finds
    /// the lock taken, and returns; the loop further up its stack publishes the
    /// change.
    fn publish(&self) {
        loop {
            let publishing = match self.publishing.try_lock() {
                Ok(publishing) => publishing,
                // A recorder that panicked left nothing half-done: the swaps only
                // take what is still to publish.
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            self.drain();
            drop(publishing);
            // Added after the last swap but before the lock was released: its
            // thread found the lock taken and left it to this one.
            if self.pending.load(Ordering::SeqCst) == 0 && self.running.load(Ordering::SeqCst) == 0
            {
                return;
            }
        }
    }

    /// Publishes everything added so far, waiting for a thread that is publishing
    /// to finish first.
    pub(crate) fn flush(&self) {
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.drain();
    }

    /// Publishes what has been added; the caller holds the lock.
    fn drain(&self) {
        loop {
            let pending = self.pending.swap(0, Ordering::SeqCst);
            let running = self.running.swap(0, Ordering::SeqCst);
            if pending == 0 && running == 0 {
                return;
            }
            if pending != 0 {
                metrics::gauge!(TASKS_PENDING).increment(pending as f64);
            }
            if running != 0 {
                metrics::gauge!(TASKS_RUNNING).increment(running as f64);
            }
        }
    }
}

/// One state change's effect on the counts, published when dropped: a caller that
/// holds a lock of its own keeps it until that lock is released, since a recorder
/// may run any code. Without the feature it holds nothing and does nothing.
#[must_use]
pub(crate) struct Delta<'a> {
    #[cfg(feature = "metrics")]
    before: Stats,
    #[cfg(feature = "metrics")]
    after: Stats,
    #[cfg(feature = "metrics")]
    gauges: &'a Gauges,
    #[cfg(not(feature = "metrics"))]
    _runtime: std::marker::PhantomData<&'a ()>,
}

impl<'a> Delta<'a> {
    /// Called under the runtime's lock, right after the change.
    #[cfg(feature = "metrics")]
    pub(crate) fn new(before: &Stats, after: &Stats, gauges: &'a Gauges) -> Self {
        gauges.add(before, after);
        Delta {
            before: *before,
            after: *after,
            gauges,
        }
    }

    #[cfg(not(feature = "metrics"))]
    pub(crate) fn new(_before: &Stats, _after: &Stats) -> Self {
        Delta {
            _runtime: std::marker::PhantomData,
        }
    }
}

impl Drop for Delta<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        {
            publish_counters(&self.before, &self.after);
            self.gauges.publish();
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) fn task_duration(end: End, name: Option<&'static str>, duration: Duration) {
    let end = match end {
        End::Succeeded => "succeeded",
        End::Failed => "failed",
        End::Panicked => "panicked",
        End::TimedOut => "timed_out",
        End::Cancelled => "cancelled",
    };
    let seconds = duration.as_secs_f64();
    match name {
        Some(name) => {
            metrics::histogram!(TASK_DURATION, "end" => end, "task" => name).record(seconds)
        }
        None => metrics::histogram!(TASK_DURATION, "end" => end).record(seconds),
    }
}
