//! Counts of what became of every task, how a task ended, and the shutdown report.
//! A leaf: it imports nothing of the engine.

use std::fmt;

use crate::task::Location;

/// A snapshot of a runtime's task counts, from [`AfterRuntime::stats`](crate::AfterRuntime::stats).
///
/// Every registered task is in exactly one of `pending`, `running`, `succeeded`,
/// `failed`, `panicked`, `timed_out`, `rejected` or `cancelled`, so those add up to
/// `registered` in every snapshot, not only at rest: nothing is lost. Counts only grow, except
/// `pending` and `running`.
///
/// ```
/// use after_runtime::AfterRuntime;
///
/// let stats = AfterRuntime::builder().build().stats();
/// assert_eq!(stats.registered, 0);
/// assert_eq!(stats.settled() + stats.pending + stats.running, stats.registered);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Tasks ever registered, including rejected ones.
    pub registered: u64,
    /// Tasks waiting: for their response to finish, or for a free slot.
    pub pending: u64,
    /// Tasks running now.
    pub running: u64,
    /// Tasks that ended in `()` or `Ok(())`.
    pub succeeded: u64,
    /// Tasks that ended in `Err`.
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks cancelled by the task timeout.
    pub timed_out: u64,
    /// Registrations refused (overload policy, or runtime shut down), and tasks
    /// [`OverloadPolicy::ShedOldest`](crate::OverloadPolicy::ShedOldest) dropped unrun
    /// to make room for newer ones.
    pub rejected: u64,
    /// Tasks cancelled at the shutdown deadline, or released after shutdown.
    pub cancelled: u64,
}

impl Stats {
    /// Tasks that have reached their end: the sum of `succeeded`, `failed`,
    /// `panicked`, `timed_out`, `rejected` and `cancelled`.
    ///
    /// ```
    /// # use after_runtime::Stats;
    /// let stats = Stats { registered: 3, succeeded: 2, failed: 1, ..Stats::default() };
    /// assert_eq!(stats.settled(), 3);
    /// ```
    pub fn settled(&self) -> u64 {
        self.succeeded
            + self.failed
            + self.panicked
            + self.timed_out
            + self.rejected
            + self.cancelled
    }
}

/// How a task that ran ended: the count it moves to from `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Succeeded,
    Failed,
    Panicked,
    TimedOut,
    Cancelled,
}

/// What [`AfterRuntime::shutdown`](crate::AfterRuntime::shutdown) leaves behind.
///
/// ```
/// use std::time::Duration;
/// use after_runtime::AfterRuntime;
///
/// # #[tokio::main] async fn main() {
/// let runtime = AfterRuntime::builder().build();
/// let report = runtime.shutdown(Duration::from_secs(5)).await;
/// assert!(report.cancelled.is_empty());
/// assert_eq!(report.stats.pending + report.stats.running, 0);
/// println!("{report}");
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The counts once shutdown returned.
    pub stats: Stats,
    /// Where each task cancelled at the deadline was registered (`file:line:column`
    /// of its `after!` block or `after()` call), in the order they were cancelled.
    pub cancelled: Vec<Location>,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} registered: {} succeeded, {} failed, {} panicked, {} timed out, {} rejected, {} cancelled",
            s.registered, s.succeeded, s.failed, s.panicked, s.timed_out, s.rejected, s.cancelled
        )?;
        if s.pending + s.running > 0 {
            write!(
                f,
                ", {} still pending, {} still running",
                s.pending, s.running
            )?;
        }
        for location in &self.cancelled {
            write!(f, "\n  cancelled: {location}")?;
        }
        Ok(())
    }
}
