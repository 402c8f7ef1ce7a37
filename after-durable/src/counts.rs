//! The per-process counts, and the database's per-status counts for the cluster.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters; [`Counts`] is their snapshot.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) registered: AtomicU64,
    pub(crate) persisted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) persist_failed: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) release_failed: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) interrupted: AtomicU64,
    pub(crate) ack_lost: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            registered: get(&self.registered),
            persisted: get(&self.persisted),
            duplicates: get(&self.duplicates),
            persist_failed: get(&self.persist_failed),
            released: get(&self.released),
            release_failed: get(&self.release_failed),
            started: get(&self.started),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            recovered: get(&self.recovered),
            interrupted: get(&self.interrupted),
            ack_lost: get(&self.ack_lost),
        }
    }
}

/// What this process did, since its [`Durable`](crate::Durable) was opened.
///
/// Once writes have settled, `registered == persisted + persist_failed`
/// (`duplicates` are persisted registrations that an existing row with the same
/// idempotency key absorbed). For workers, `failed == retried + dead`, and every
/// started run ends as succeeded, failed or interrupted (shutdown past its grace).
/// The cluster's truth is the database: [`Durable::status_counts`](crate::Durable::status_counts).
///
/// ```
/// let c = after_durable::Counts::default();
/// assert_eq!(c.registered, c.persisted + c.persist_failed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Jobs registered with `after_durable` in requests.
    pub registered: u64,
    /// Registrations written to the database (including duplicates).
    pub persisted: u64,
    /// Registrations whose idempotency key already had a row: no new row.
    pub duplicates: u64,
    /// Registrations that could not be written: logged at error level.
    pub persist_failed: u64,
    /// Held jobs made runnable after their response (both `after_durable` and
    /// `enqueue` inside a request).
    pub released: u64,
    /// Releases that failed: those jobs run when their hold expires.
    pub release_failed: u64,
    /// Runs started by this process's workers.
    pub started: u64,
    /// Runs that returned `Ok`.
    pub succeeded: u64,
    /// Runs that returned `Err`, panicked, or whose data no longer deserializes.
    pub failed: u64,
    /// Failed runs rescheduled after their backoff.
    pub retried: u64,
    /// Failed runs that used the last attempt: the job is dead.
    pub dead: u64,
    /// Jobs taken back from workers that stopped sending heartbeats.
    pub recovered: u64,
    /// Runs cut off by a shutdown past its grace: put back, run again on a next start.
    pub interrupted: u64,
    /// Runs whose end could not be recorded because another worker had recovered
    /// the job meanwhile (it runs again there).
    pub ack_lost: u64,
}

/// How many jobs the database holds in each status, for every process sharing it.
///
/// ```
/// let s = after_durable::StatusCounts::default();
/// assert_eq!(s.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// Waiting for their run time (held jobs, backoff after a failure excluded).
    pub pending: u64,
    /// Claimed by a worker, about to start.
    pub queued: u64,
    /// Running now (or on a crashed worker, until it is recovered).
    pub running: u64,
    /// Finished with `Ok`.
    pub done: u64,
    /// Failed, waiting for the backoff before their next run.
    pub failed: u64,
    /// Out of attempts: listed by [`Durable::dead_jobs`](crate::Durable::dead_jobs).
    pub dead: u64,
}

impl StatusCounts {
    /// All rows.
    ///
    /// ```
    /// let s = after_durable::StatusCounts { done: 2, dead: 1, ..Default::default() };
    /// assert_eq!(s.total(), 3);
    /// ```
    pub fn total(&self) -> u64 {
        self.pending + self.queued + self.running + self.done + self.failed + self.dead
    }
}
