//! Publishing the counts through the `metrics` facade (feature `metrics`).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `after_tasks_registered_total` | counter | |
//! | `after_tasks_ended_total` | counter | `end`: `succeeded`, `failed`, `panicked`, `timed_out`, `rejected`, `cancelled` |
//! | `after_tasks_pending` | gauge | |
//! | `after_tasks_running` | gauge | |
//! | `after_task_duration_seconds` | histogram | `end` |
//!
//! Changes are published as deltas of one consistent state change, so counters never
//! go backwards however threads interleave.

#[cfg(feature = "metrics")]
use std::time::Duration;

#[cfg(feature = "metrics")]
use crate::executor::End;
use crate::stats::Stats;

#[cfg(feature = "metrics")]
fn publish(before: &Stats, after: &Stats) {
    let grew = |a: u64, b: u64| b.saturating_sub(a);
    let registered = grew(before.registered, after.registered);
    if registered > 0 {
        metrics::counter!("after_tasks_registered_total").increment(registered);
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
            metrics::counter!("after_tasks_ended_total", "end" => end).increment(b - a);
        }
    }
    let delta = |a: u64, b: u64| b as f64 - a as f64;
    if before.pending != after.pending {
        metrics::gauge!("after_tasks_pending").increment(delta(before.pending, after.pending));
    }
    if before.running != after.running {
        metrics::gauge!("after_tasks_running").increment(delta(before.running, after.running));
    }
}

/// One state change's effect on the counts, published when dropped: a caller that
/// holds a lock of its own keeps it until that lock is released, since a recorder
/// may run any code. Without the feature it holds nothing and does nothing.
#[must_use]
pub(crate) struct Delta {
    #[cfg(feature = "metrics")]
    before: Stats,
    #[cfg(feature = "metrics")]
    after: Stats,
}

impl Delta {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(before: &Stats, after: &Stats) -> Self {
        Delta {
            #[cfg(feature = "metrics")]
            before: *before,
            #[cfg(feature = "metrics")]
            after: *after,
        }
    }
}

impl Drop for Delta {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        publish(&self.before, &self.after);
    }
}

#[cfg(feature = "metrics")]
pub(crate) fn task_duration(end: End, duration: Duration) {
    let end = match end {
        End::Succeeded => "succeeded",
        End::Failed => "failed",
        End::Panicked => "panicked",
        End::TimedOut => "timed_out",
        End::Cancelled => "cancelled",
    };
    metrics::histogram!("after_task_duration_seconds", "end" => end).record(duration.as_secs_f64());
}
