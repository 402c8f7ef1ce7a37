//! The runtime's state and every change to it, each a small named method.
//!
//! Plain data: no lock, no tokio, no logging. `mod.rs` calls these under the
//! runtime's lock and, once it has let go, spawns, logs and drops whatever a change
//! hands back (a task's captures and a log subscriber may run any code). That is
//! also why each change can be tested here on its own.
//!
//! Every change keeps one rule: each registered task is counted in exactly one of
//! `pending`, `running`, `succeeded`, `failed`, `panicked`, `timed_out`, `rejected`
//! and `cancelled`, so they add up to `registered`. And two bounds: `running` never
//! passes `max_concurrency`, and `pending` never passes `max_pending`.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use rustc_hash::FxHashMap;
use slab::Slab;
use tokio::time::Instant;

use crate::config::{Config, OverloadPolicy};
use crate::error::{AfterError, AfterErrorKind};
use crate::job::{Job, Jobs};
use crate::request::RequestInfo;
use crate::scope::RequestScope;
use crate::stats::{End, ShutdownReport, Stats, TaskStats, UnfinishedTask};
use crate::task::Site;

/// Queue slots kept once a burst has drained.
const QUEUE_KEEP: usize = 1024;

/// A released task waiting for a slot, with its request's scope.
pub(crate) type Queued = (Arc<RequestScope>, Job);

/// A task shed to make room, for the caller to log and drop. Boxed: every
/// registration carries the place for one, and a pointer is cheaper to move.
pub(crate) type Shed = Box<Queued>;

/// A scope's entry in the runtime's list of scopes whose tasks wait for a response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitingKey(usize);

/// Where the runtime is in its life; only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// `shutdown` waits for requests and tasks to end; new ones are still taken.
    Draining,
    /// Drained or past the deadline: new tasks are refused, late ones cancelled.
    Closed,
    /// The remaining tasks were cancelled: `shutdown` returns at once.
    Done,
}

pub(super) struct State {
    limits: Config,
    stats: Stats,
    /// Released tasks waiting for a concurrency slot, oldest first.
    queue: VecDeque<Queued>,
    phase: Phase,
    /// The tasks counted in `stats.cancelled`, for the shutdown report.
    unfinished: Vec<UnfinishedTask>,
    /// The earliest deadline a `shutdown` caller gave; `None` while there is none.
    deadline: Option<Instant>,
    /// Requests whose tasks wait for their response, so a shutdown deadline can
    /// cancel and report those tasks too.
    waiting: Slab<Weak<RequestScope>>,
    /// `wait_idle` calls waiting now.
    idle_watchers: usize,
    /// Registrations and ends by name, or by location for unnamed tasks. Keys are
    /// `'static` sites in the code, so the map is bounded by the code. Looked up twice
    /// per task under the lock, so keyed by where the strings are (`SiteId`), not by
    /// what they say, and hashed with Fx, not SipHash: no key comes from a client.
    by_task: FxHashMap<SiteId, TaskStats>,
}

/// A task group's key in the map: the address of its name, or of its location's
/// file name with the line and column. Hashing and comparing a few words costs a
/// fraction of hashing and comparing the strings. One text at two addresses (the
/// same name in two crates) makes two entries, which `task_stats` adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SiteId {
    text: usize,
    len: usize,
    line: u32,
    column: u32,
}

impl SiteId {
    fn of(site: &Site) -> Self {
        match site.name {
            Some(name) => SiteId {
                text: name.as_ptr().addr(),
                len: name.len(),
                line: 0,
                column: 0,
            },
            None => {
                let file = site.location.file();
                SiteId {
                    text: file.as_ptr().addr(),
                    len: file.len(),
                    line: site.location.line(),
                    column: site.location.column(),
                }
            }
        }
    }
}

/// What `admit` decided for a task whose response is not finished.
pub(super) struct Admitted {
    /// The scope's new waiting-list entry (for its first task), or why the task was
    /// refused.
    pub(super) result: Result<Option<WaitingKey>, AfterError>,
    /// A task dropped to make room for this one (`OverloadPolicy::ShedOldest`).
    pub(super) shed: Option<Shed>,
}

/// What `submit` decided for a task whose response is finished.
pub(super) enum Submitted {
    /// A slot was free: it is counted as running, for the caller to start.
    Start(Job),
    /// It waits in the queue for a slot, maybe in the place of a shed task.
    Queued { shed: Option<Shed> },
    /// Refused, and counted as rejected.
    Refused(AfterError, Job),
}

/// How `release` split a request's released tasks.
pub(super) enum Split {
    /// A slot for every one, and not shut down: all start now.
    AllStart(Jobs),
    /// Those that start now, and those cancelled because the runtime is closed; the
    /// rest wait in the queue.
    Some { start: Jobs, cancelled: Jobs },
}

// The changes every request makes (admit, release, finish) are `#[inline]`: split
// out of the runtime's calls they were written in, they would otherwise cost each
// request a call and a copy of their result, which the instruction count shows.
impl State {
    pub(super) fn new(limits: Config) -> Self {
        State {
            limits,
            stats: Stats::default(),
            queue: VecDeque::new(),
            phase: Phase::Running,
            unfinished: Vec::new(),
            deadline: None,
            waiting: Slab::new(),
            idle_watchers: 0,
            by_task: FxHashMap::default(),
        }
    }

    #[inline]
    pub(super) fn stats(&self) -> Stats {
        self.stats
    }

    /// Counts a registration made while its response is not finished, and refuses it
    /// when shut down or overloaded: the request already holds `held` tasks, and all
    /// requests together `max_pending`. With `first`, the scope enters the waiting
    /// list.
    #[inline]
    pub(super) fn admit(
        &mut self,
        scope: &Arc<RequestScope>,
        site: Site,
        held: usize,
        first: bool,
    ) -> Admitted {
        self.stats.registered += 1;
        self.task(site).registered += 1;
        let shed = match self.room_to_wait(Some(held)) {
            Ok(shed) => shed,
            Err(error) => {
                self.stats.rejected += 1;
                self.task(site).rejected += 1;
                return Admitted {
                    result: Err(error),
                    shed: None,
                };
            }
        };
        self.stats.pending += 1;
        let key = first.then(|| WaitingKey(self.waiting.insert(Arc::downgrade(scope))));
        Admitted {
            result: Ok(key),
            shed,
        }
    }

    /// Counts a registration whose response is already finished: it starts now when a
    /// slot is free, whatever the number waiting; else it waits for a slot, within
    /// `max_pending`.
    pub(super) fn submit(&mut self, scope: &Arc<RequestScope>, job: Job) -> Submitted {
        self.stats.registered += 1;
        self.task(job.site).registered += 1;
        if self.phase < Phase::Closed && self.stats.running < self.max_concurrency() {
            self.stats.running += 1;
            return Submitted::Start(job);
        }
        match self.room_to_wait(None) {
            Ok(shed) => {
                self.stats.pending += 1;
                self.queue.push_back((scope.clone(), job));
                Submitted::Queued { shed }
            }
            Err(error) => {
                self.stats.rejected += 1;
                self.task(job.site).rejected += 1;
                Submitted::Refused(error, job)
            }
        }
    }

    /// Whether one more task may wait, its request holding `held` already (when its
    /// response is not finished): `Ok` with the task shed to make room, if one was.
    #[inline]
    fn room_to_wait(&mut self, held: Option<usize>) -> Result<Option<Shed>, AfterError> {
        let limits = &self.limits;
        if self.phase >= Phase::Closed {
            return Err(AfterError::new(AfterErrorKind::ShutDown));
        }
        if let Some(held) = held
            && held >= limits.max_pending_per_request
        {
            return Err(AfterError::per_request(limits.max_pending_per_request));
        }
        if self.stats.pending < limits.max_pending as u64 {
            return Ok(None);
        }
        match limits.overload {
            OverloadPolicy::Reject => Err(AfterError::new(AfterErrorKind::Overloaded)),
            OverloadPolicy::ShedOldest => self.shed_oldest().map(Some),
        }
    }

    /// Takes out the task that has waited longest for a slot, counted as rejected,
    /// to make room (the caller logs and drops it); refuses the new task when none
    /// waits for a slot.
    #[cold]
    fn shed_oldest(&mut self) -> Result<Shed, AfterError> {
        let oldest = self
            .queue
            .pop_front()
            .ok_or(AfterError::new(AfterErrorKind::Overloaded))?;
        self.stats.pending -= 1;
        self.stats.rejected += 1;
        self.task(oldest.1.site).rejected += 1;
        Ok(Box::new(oldest))
    }

    /// Hands a request's released tasks over, in order: each starts now if a slot is
    /// free, else waits in order for one; cancelled if the runtime is closed. Takes
    /// the scope off the waiting list.
    #[inline]
    pub(super) fn release(
        &mut self,
        scope: &Arc<RequestScope>,
        waiting: Option<WaitingKey>,
        jobs: Jobs,
    ) -> Split {
        self.leave_waiting(scope, waiting);
        let count = jobs.len() as u64;
        if self.phase < Phase::Closed && self.stats.running + count <= self.max_concurrency() {
            // The usual case: every task starts now.
            self.stats.pending -= count;
            self.stats.running += count;
            return Split::AllStart(jobs);
        }
        let (mut start, mut cancelled) = (Jobs::default(), Jobs::default());
        for job in jobs {
            if self.phase >= Phase::Closed {
                self.stats.pending -= 1;
                self.cancelled(job.site, &scope.request);
                cancelled.push(job);
            } else if self.stats.running < self.max_concurrency() {
                self.stats.pending -= 1;
                self.stats.running += 1;
                start.push(job);
            } else {
                self.queue.push_back((scope.clone(), job));
            }
        }
        Split::Some { start, cancelled }
    }

    /// Takes `scope` off the list of scopes waiting for their response.
    #[inline]
    fn leave_waiting(&mut self, scope: &Arc<RequestScope>, waiting: Option<WaitingKey>) {
        let Some(WaitingKey(key)) = waiting else {
            return;
        };
        // A shutdown deadline may have emptied the list already, and the key been
        // given to another scope since.
        if self
            .waiting
            .get(key)
            .is_some_and(|entry| entry.as_ptr() == Arc::as_ptr(scope))
        {
            self.waiting.remove(key);
        }
    }

    /// A running task ended: counts its end; returns the next waiting task, now
    /// counted as running, for the caller to start.
    #[inline]
    pub(super) fn finish(&mut self, end: End, site: Site, request: &RequestInfo) -> Option<Queued> {
        self.stats.running -= 1;
        let task = self.task(site);
        match end {
            End::Succeeded => task.succeeded += 1,
            End::Failed => task.failed += 1,
            End::Panicked => task.panicked += 1,
            End::TimedOut => task.timed_out += 1,
            End::Cancelled => {}
        }
        match end {
            End::Succeeded => self.stats.succeeded += 1,
            End::Failed => self.stats.failed += 1,
            End::Panicked => self.stats.panicked += 1,
            End::TimedOut => self.stats.timed_out += 1,
            End::Cancelled => self.cancelled(site, request),
        }
        self.start_next()
    }

    /// The task that has waited longest for a slot, now counted as running.
    #[inline]
    fn start_next(&mut self) -> Option<Queued> {
        let next = self.queue.pop_front();
        // Give back what a burst grew the queue to, once it has drained.
        if self.queue.is_empty() && self.queue.capacity() > QUEUE_KEEP {
            self.queue.shrink_to(QUEUE_KEEP);
        }
        if next.is_some() {
            self.stats.pending -= 1;
            self.stats.running += 1;
        }
        next
    }

    /// Whether someone waits for what this change reached, so the caller must wake
    /// them: a shutdown for the last running task to end, a `wait_idle` for the last
    /// pending or running one. The caller skips waking anyone otherwise, as in the
    /// usual case, where nobody waits.
    #[inline]
    pub(super) fn idle_and_watched(&self) -> bool {
        self.stats.running == 0
            && (self.phase != Phase::Running || (self.idle_watchers > 0 && self.stats.pending == 0))
    }

    /// A `wait_idle` call starts waiting, or stops: woken by every change that leaves
    /// nothing pending or running from then on.
    pub(super) fn watch_idle(&mut self, watching: bool) {
        if watching {
            self.idle_watchers += 1;
        } else {
            self.idle_watchers -= 1;
        }
    }

    /// Counts one task as cancelled and remembers it for the report. Cold: only a
    /// shutdown (or a task without a tokio runtime) cancels.
    #[cold]
    fn cancelled(&mut self, site: Site, request: &RequestInfo) {
        self.stats.cancelled += 1;
        self.task(site).cancelled += 1;
        self.unfinished.push(UnfinishedTask {
            location: site.location,
            name: site.name,
            method: request.method.clone(),
            path: request.path.as_str().to_owned(),
        });
    }

    /// The counts of the task's group, made on its first registration.
    #[inline]
    fn task(&mut self, site: Site) -> &mut TaskStats {
        self.by_task
            .entry(SiteId::of(&site))
            .or_insert_with(|| TaskStats::new(site.key()))
    }

    /// The counts of every group of tasks, ordered by key: names first. Entries of
    /// one group under several `SiteId`s (the same text at two addresses) add up.
    pub(super) fn task_stats(&self) -> Vec<TaskStats> {
        let mut all: Vec<TaskStats> = self.by_task.values().copied().collect();
        all.sort_unstable_by_key(|t| t.task);
        all.dedup_by(|later, kept| {
            let same = later.task == kept.task;
            if same {
                kept.registered += later.registered;
                kept.succeeded += later.succeeded;
                kept.failed += later.failed;
                kept.panicked += later.panicked;
                kept.timed_out += later.timed_out;
                kept.rejected += later.rejected;
                kept.cancelled += later.cancelled;
            }
            same
        });
        all
    }

    #[inline]
    fn max_concurrency(&self) -> u64 {
        self.limits.max_concurrency as u64
    }
}

/// The shutdown's changes, in the order it makes them.
impl State {
    /// A `shutdown` call begins (or joins) the drain, bringing the deadline forward
    /// to `deadline` if it is earlier. Returns whether the runtime is already done.
    pub(super) fn begin_shutdown(&mut self, deadline: Option<Instant>) -> bool {
        if self.phase == Phase::Running {
            self.phase = Phase::Draining;
        }
        if let Some(deadline) = deadline {
            self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        }
        self.phase == Phase::Done
    }

    /// Whether new tasks are refused: the drain is over, or the deadline passed.
    pub(super) fn is_closed(&self) -> bool {
        self.phase >= Phase::Closed
    }

    /// The earliest deadline a `shutdown` caller gave.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Closes the runtime to new tasks if nothing is in flight (`requests_idle`: no
    /// request holds a token, and no task runs) or the deadline has passed at `now`.
    /// Returns whether it is closed.
    pub(super) fn close_if_drained(&mut self, requests_idle: bool, now: Instant) -> bool {
        let idle = requests_idle && self.stats.running == 0;
        let late = self.deadline.is_some_and(|d| now >= d);
        if idle || late {
            self.phase = self.phase.max(Phase::Closed);
        }
        idle || late
    }

    /// At the deadline: takes every task waiting for a slot, counted as cancelled,
    /// for the caller to log and drop.
    pub(super) fn cancel_queued(&mut self) -> Vec<Queued> {
        let queued: Vec<_> = self.queue.drain(..).collect();
        self.stats.pending -= queued.len() as u64;
        for (scope, job) in &queued {
            self.cancelled(job.site, &scope.request);
        }
        queued
    }

    /// At the deadline: the scopes whose tasks still wait for their response.
    pub(super) fn take_unfinished(&mut self) -> Vec<Arc<RequestScope>> {
        self.waiting
            .drain()
            .filter_map(|scope| scope.upgrade())
            .collect()
    }

    /// Counts the tasks an unfinished scope gave up at the deadline as cancelled.
    pub(super) fn cancel_unfinished(&mut self, request: &RequestInfo, jobs: &[Job]) {
        self.stats.pending -= jobs.len() as u64;
        for job in jobs {
            self.cancelled(job.site, request);
        }
    }

    /// The remaining tasks were cancelled: later `shutdown` calls return at once.
    pub(super) fn done(&mut self) {
        self.phase = Phase::Done;
    }

    pub(super) fn report(&self) -> ShutdownReport {
        ShutdownReport {
            stats: self.stats,
            unfinished: self.unfinished.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
