//! The runtime handle: admission, the bounded executor queue, counts, and shutdown.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use slab::Slab;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::config::{Builder, Config, OverloadPolicy};
use crate::error::{AfterError, AfterErrorKind};
use crate::executor;
use crate::metrics::Delta;
use crate::scope::RequestScope;
use crate::stats::{End, ShutdownReport, Stats};
use crate::task::Location;
use crate::task::{Job, Jobs};

/// Sleeps until `deadline`; never returns without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// How long `shutdown` waits, after cancelling at the deadline, for cancelled tasks
/// to reach their next poll.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Queue slots kept once a burst has drained.
const QUEUE_KEEP: usize = 1024;

/// Runs after tasks: bounds them, isolates their failures, counts them, and drains
/// them on shutdown.
///
/// A cheap-to-clone handle (one `Arc`); clones share the same tasks and counts. Give
/// one to [`AfterLayer`](crate::AfterLayer), keep one to call [`shutdown`](Self::shutdown)
/// once the server has stopped.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use after_runtime::{AfterLayer, AfterRuntime};
/// use axum::{routing::get, Router};
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let runtime = AfterRuntime::builder().max_concurrency(64).build();
/// let app = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(AfterLayer::new(runtime.clone()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// // The server has stopped taking requests; let what they registered finish.
/// let report = runtime.shutdown(Duration::from_secs(30)).await;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AfterRuntime {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    config: Config,
    state: Mutex<State>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Signalled when the last running task ends.
    idle: Notify,
    /// Signalled when a `shutdown` call brings the deadline forward.
    deadline_moved: Notify,
    #[cfg(feature = "metrics")]
    gauges: crate::metrics::Gauges,
}

struct State {
    stats: Stats,
    /// Released tasks waiting for a concurrency slot, oldest first.
    queue: VecDeque<Queued>,
    phase: Phase,
    cancelled_at: Vec<Location>,
    /// The earliest deadline a `shutdown` caller gave; `None` while there is none.
    deadline: Option<tokio::time::Instant>,
    /// Requests whose tasks wait for their response, so a shutdown deadline can
    /// cancel and report those tasks too.
    waiting: Slab<Weak<RequestScope>>,
}

/// A released task waiting for a slot, with its request's scope.
type Queued = (Arc<RequestScope>, Job);

/// How `dispatch` split a request's released tasks.
enum Split {
    /// A slot for every one, and not shut down: all start now.
    AllStart(Jobs),
    /// Those that start now, and those cancelled because the runtime is closed; the
    /// rest wait in the queue.
    Some { start: Jobs, cancelled: Jobs },
}

/// A scope's entry in the runtime's list of scopes whose tasks wait for a response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitingKey(usize);

impl State {
    /// Counts one task as cancelled and remembers where it was registered.
    fn cancelled(&mut self, location: Location) {
        self.stats.cancelled += 1;
        self.cancelled_at.push(location);
    }
}

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

impl fmt::Debug for AfterRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfterRuntime")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for AfterRuntime {
    fn default() -> Self {
        Builder::default().build()
    }
}

impl Builder {
    /// Builds the runtime. It needs no tokio runtime to be built; tasks are spawned
    /// on the tokio runtime that served their request.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().build();
    /// assert_eq!(runtime.stats().registered, 0);
    /// ```
    pub fn build(self) -> AfterRuntime {
        AfterRuntime::from_config(self.into_config())
    }
}

impl AfterRuntime {
    /// Starts configuring a runtime; every setting has a documented default.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().max_pending(1_000).build();
    /// # let _ = runtime;
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide runtime with default settings, used by `#[with_after]`
    /// handlers served without [`AfterLayer`](crate::AfterLayer). Shut it down like any
    /// other to drain it.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let stats = AfterRuntime::global().stats();
    /// # let _ = stats;
    /// ```
    pub fn global() -> AfterRuntime {
        static GLOBAL: OnceLock<AfterRuntime> = OnceLock::new();
        GLOBAL.get_or_init(AfterRuntime::default).clone()
    }

    fn from_config(config: Config) -> Self {
        AfterRuntime {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    stats: Stats::default(),
                    queue: VecDeque::new(),
                    phase: Phase::Running,
                    cancelled_at: Vec::new(),
                    deadline: None,
                    waiting: Slab::new(),
                }),
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                idle: Notify::new(),
                deadline_moved: Notify::new(),
                #[cfg(feature = "metrics")]
                gauges: crate::metrics::Gauges::default(),
            }),
        }
    }

    /// A consistent snapshot of the counts: the terminal counts plus `pending` and
    /// `running` add up to `registered`.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let stats = AfterRuntime::builder().build().stats();
    /// assert_eq!(stats.settled() + stats.pending + stats.running, stats.registered);
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.state().stats
    }

    /// Stops taking new tasks once every pending and running one has ended, waiting at
    /// most `grace`; then cancels what remains and reports it.
    ///
    /// Tasks registered while draining (nested in running tasks, or by requests the
    /// server is still finishing) are accepted and waited for. At the deadline,
    /// waiting tasks (for a slot, or for a response that has not finished) are
    /// dropped unrun and running ones are cancelled at their next `.await`; each is
    /// counted in `cancelled` and its `file:line` listed in the report. Afterwards
    /// every registration is rejected with [`AfterErrorKind::ShutDown`], and tasks
    /// of responses that finish later are cancelled.
    ///
    /// Any `grace` works, `Duration::MAX` included (no deadline). Every caller returns
    /// once the runtime is fully shut down, with the same final report: a call made
    /// while another drains joins it, and the earliest deadline any caller gave
    /// applies to both; a call made afterwards returns at once.
    ///
    /// A cancelled task that does not reach its next `.await` within 5 seconds (it
    /// blocks its thread) is left behind: `shutdown` returns and the report counts it
    /// as still running. Called from inside a request under the layer, it waits for
    /// that request too, so it cancels the request's tasks at the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use after_runtime::AfterRuntime;
    /// # #[tokio::main] async fn main() {
    /// let runtime = AfterRuntime::builder().build();
    /// let report = runtime.shutdown(Duration::from_secs(30)).await;
    /// assert_eq!(report.stats.registered, 0);
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now().checked_add(grace);
        let done = self.update(|state| {
            if state.phase == Phase::Running {
                state.phase = Phase::Draining;
            }
            if let Some(deadline) = deadline {
                state.deadline = Some(state.deadline.map_or(deadline, |d| d.min(deadline)));
            }
            state.phase == Phase::Done
        });
        if !done {
            self.shared.tracker.close();
            // A caller already draining may now have an earlier deadline.
            self.shared.deadline_moved.notify_waiters();
            self.drain().await;
            self.cancel_remaining().await;
        }
        let state = self.shared.state();
        ShutdownReport {
            stats: state.stats,
            cancelled: state.cancelled_at.clone(),
        }
    }

    /// Waits until no request is in flight and no task is running or waiting, or
    /// the earliest deadline passes; then closes the runtime to new tasks.
    async fn drain(&self) {
        let shared = &self.shared;
        loop {
            let moved = shared.deadline_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let deadline = {
                let state = shared.state();
                if state.phase >= Phase::Closed {
                    return;
                }
                state.deadline
            };
            tokio::select! {
                () = async {
                    // Requests in flight (tracker tokens), then running and queued tasks.
                    shared.tracker.wait().await;
                    self.no_task_running().await;
                } => {}
                () = sleep_until(deadline) => {}
                () = moved => continue,
            }
            // Either may have started again while the other was awaited (a request
            // arrived, a task registered a nested one): only close once nothing is in
            // flight, or at the deadline.
            let mut state = shared.state();
            let idle = shared.tracker.is_empty() && state.stats.running == 0;
            let late = state
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d);
            if idle || late {
                state.phase = state.phase.max(Phase::Closed);
                return;
            }
        }
    }

    /// At the deadline: drops the waiting tasks unrun, cancels the running ones, and
    /// waits (bounded) for them to stop. Every caller of `shutdown` runs it; what one
    /// caller took, the others find gone.
    async fn cancel_remaining(&self) {
        let shared = &self.shared;
        let queued = self.update(|state| {
            let queued: Vec<_> = state.queue.drain(..).collect();
            state.stats.pending -= queued.len() as u64;
            for (_, job) in &queued {
                state.cancelled(job.location);
            }
            queued
        });
        for (scope, job) in queued {
            executor::log_cancelled(
                &scope,
                job.location,
                "it was still waiting at the shutdown deadline",
            );
            job.drop_unrun();
        }

        // Tasks of requests whose responses are still not finished.
        let open: Vec<Arc<RequestScope>> = self.update(|state| {
            state
                .waiting
                .drain()
                .filter_map(|scope| scope.upgrade())
                .collect()
        });
        for scope in open {
            let jobs = scope.cancel_waiting();
            self.update(|state| {
                state.stats.pending -= jobs.len() as u64;
                for job in &jobs {
                    state.cancelled(job.location);
                }
            });
            for job in jobs {
                executor::log_cancelled(
                    &scope,
                    job.location,
                    "its response had not finished at the shutdown deadline",
                );
                job.drop_unrun();
            }
        }

        if shared.state().stats.running > 0 {
            shared.cancel.cancel();
            // Cancelled tasks stop at their next poll. One blocking its thread never
            // does: stop waiting after a bound and report it as still running.
            let _ = tokio::time::timeout(CANCEL_WAIT, self.no_task_running()).await;
        }
        self.update(|state| state.phase = Phase::Done);
    }

    /// Resolves once no task is running (so none is queued either: the queue only
    /// fills while every slot is taken). Woken by `finish` outside `Phase::Running`.
    async fn no_task_running(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.state().stats.running == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Keeps a draining runtime waiting for a request in flight.
    pub(crate) fn token(&self) -> TaskTrackerToken {
        self.shared.tracker.token()
    }

    /// Counts a registration made while its response is not finished, and refuses it
    /// when shut down or overloaded: the request already holds `held` tasks (at most
    /// `max_pending_per_request`), and all requests together at most `max_pending`.
    /// With `first`, the scope enters the waiting list, under the same lock.
    ///
    /// The counts' change is published when the returned `Delta` drops: the caller
    /// may hold the scope's lock.
    pub(crate) fn admit(
        &self,
        scope: &Arc<RequestScope>,
        held: usize,
        first: bool,
    ) -> (Result<Option<WaitingKey>, AfterError>, Delta<'_>) {
        let config = &self.shared.config;
        self.update_deferred(|state| {
            state.stats.registered += 1;
            let refused = if state.phase >= Phase::Closed {
                AfterError::new(AfterErrorKind::ShutDown)
            } else if held >= config.max_pending_per_request {
                AfterError::per_request(config.max_pending_per_request)
            } else if state.stats.pending >= config.max_pending as u64 {
                match config.overload {
                    OverloadPolicy::Reject => AfterError::new(AfterErrorKind::Overloaded),
                }
            } else {
                state.stats.pending += 1;
                let key = first.then(|| WaitingKey(state.waiting.insert(Arc::downgrade(scope))));
                return Ok(key);
            };
            state.stats.rejected += 1;
            Err(refused)
        })
    }

    /// Registers a task whose response is already finished (a nested task, or one
    /// registered late by a handler moved off its request): it starts now when a
    /// slot is free, whatever the number waiting; else it waits for a slot, within
    /// `max_pending`.
    pub(crate) fn submit(&self, scope: &Arc<RequestScope>, job: Job) -> Result<(), AfterError> {
        let config = &self.shared.config;
        let (admitted, counts) = self.update_deferred(|state| {
            state.stats.registered += 1;
            let refused = if state.phase >= Phase::Closed {
                AfterError::new(AfterErrorKind::ShutDown)
            } else if state.stats.running < config.max_concurrency as u64 {
                state.stats.running += 1;
                return Ok(Some(job));
            } else if state.stats.pending >= config.max_pending as u64 {
                match config.overload {
                    OverloadPolicy::Reject => AfterError::new(AfterErrorKind::Overloaded),
                }
            } else {
                state.stats.pending += 1;
                state.queue.push_back((scope.clone(), job));
                return Ok(None);
            };
            state.stats.rejected += 1;
            Err((refused, job))
        });
        drop(counts);
        match admitted {
            Ok(start) => {
                if let Some(job) = start {
                    self.start_on(scope.clone(), job);
                }
                Ok(())
            }
            Err((error, job)) => {
                executor::log_rejected(scope, job.location, &error);
                job.drop_unrun();
                Err(error)
            }
        }
    }

    /// Hands a request's released tasks to the executor, in order, under one lock:
    /// each starts now if a slot is free, else waits in order for one. Takes the
    /// scope off the waiting list.
    pub(crate) fn dispatch(
        &self,
        scope: Arc<RequestScope>,
        waiting: Option<WaitingKey>,
        jobs: Jobs,
    ) {
        let max_concurrency = self.shared.config.max_concurrency as u64;
        let split = self.update(|state| {
            if let Some(WaitingKey(key)) = waiting {
                // A shutdown deadline may have emptied the list already.
                if state
                    .waiting
                    .get(key)
                    .is_some_and(|entry| entry.as_ptr() == Arc::as_ptr(&scope))
                {
                    state.waiting.remove(key);
                }
            }
            let count = jobs.len() as u64;
            if state.phase < Phase::Closed && state.stats.running + count <= max_concurrency {
                // The usual case: every task starts now.
                state.stats.pending -= count;
                state.stats.running += count;
                return Split::AllStart(jobs);
            }
            let (mut start, mut cancelled) = (Jobs::default(), Jobs::default());
            for job in jobs {
                if state.phase >= Phase::Closed {
                    state.stats.pending -= 1;
                    state.cancelled(job.location);
                    cancelled.push(job);
                } else if state.stats.running < max_concurrency {
                    state.stats.pending -= 1;
                    state.stats.running += 1;
                    start.push(job);
                } else {
                    state.queue.push_back((scope.clone(), job));
                }
            }
            Split::Some { start, cancelled }
        });
        let start = match split {
            Split::AllStart(all) => all,
            Split::Some { start, cancelled } => {
                for job in cancelled {
                    executor::log_cancelled(
                        &scope,
                        job.location,
                        "its response finished after shutdown",
                    );
                    // Dropped here, outside the lock: its captures may run any code.
                    job.drop_unrun();
                }
                start
            }
        };
        match start.single() {
            // Most requests register one task: it takes the scope along.
            Ok(Some(job)) => self.start_on(scope, job),
            Ok(None) => {}
            Err(all) => {
                for job in all {
                    self.start_on(scope.clone(), job);
                }
            }
        }
    }

    /// Spawns on the tokio runtime that served the task's request: wherever the
    /// response finished (a body may be dropped on a thread outside any runtime) and
    /// wherever a sibling ended, for a queued task. (Not `tokio::spawn`: a request's
    /// future may be dropped, releasing its tasks, where a task id is set but no
    /// runtime is, as when a `LocalSet` outlives its runtime.)
    fn start_on(&self, scope: Arc<RequestScope>, job: Job) {
        match scope.handle.clone() {
            // Spawned as is: the task's future is small (its timer and cancellation
            // wait are boxed, and built only if it waits). Not tracked by the
            // `TaskTracker`: `running` counts it, and `shutdown` waits for that to
            // reach zero.
            Some(handle) => drop(handle.spawn(executor::run(scope, job))),
            None => {
                let location = job.location;
                executor::log_cancelled(
                    &scope,
                    location,
                    "its request was not served on a tokio runtime",
                );
                self.finish(End::Cancelled, location);
            }
        }
    }

    /// A running task ended: counts it and starts the next waiting one.
    pub(crate) fn finish(&self, end: End, location: Location) {
        let Some(next) = self.finish_one(end, location) else {
            return;
        };
        // Starting the next task can end one synchronously (tokio drops futures
        // spawned onto a runtime that is shutting down), which calls `finish` again.
        // Start those one after another here instead of nesting them, so a long
        // queue cannot overflow the stack.
        thread_local! {
            static STARTING: Cell<bool> = const { Cell::new(false) };
            static DEFERRED: RefCell<VecDeque<(AfterRuntime, Queued)>> =
                const { RefCell::new(VecDeque::new()) };
        }
        let nested = STARTING.try_with(|s| s.replace(true)).unwrap_or(false);
        if nested {
            let mut next = Some(next);
            let _ = DEFERRED.try_with(|d| {
                if let Some(next) = next.take() {
                    d.borrow_mut().push_back((self.clone(), next));
                }
            });
            // No thread-local left (the thread is exiting): start it here.
            if let Some((scope, job)) = next {
                self.start_on(scope, job);
            }
            return;
        }
        let (scope, job) = next;
        self.start_on(scope, job);
        while let Some((runtime, (scope, job))) = DEFERRED
            .try_with(|d| d.borrow_mut().pop_front())
            .ok()
            .flatten()
        {
            runtime.start_on(scope, job);
        }
        let _ = STARTING.try_with(|s| s.set(false));
    }

    /// Counts a task's end; returns the next waiting task, now counted as running,
    /// for the caller to start.
    fn finish_one(&self, end: End, location: Location) -> Option<Queued> {
        let (next, idle) = self.update(|state| {
            let stats = &mut state.stats;
            stats.running -= 1;
            match end {
                End::Succeeded => stats.succeeded += 1,
                End::Failed => stats.failed += 1,
                End::Panicked => stats.panicked += 1,
                End::TimedOut => stats.timed_out += 1,
                End::Cancelled => state.cancelled(location),
            }
            let next = state.queue.pop_front();
            // Give back what a burst grew the queue to, once it has drained.
            if state.queue.is_empty() && state.queue.capacity() > QUEUE_KEEP {
                state.queue.shrink_to(QUEUE_KEEP);
            }
            if next.is_some() {
                state.stats.pending -= 1;
                state.stats.running += 1;
            }
            // Only a shutdown waits for the last task; skip the lock otherwise.
            let watched = state.phase != Phase::Running;
            (next, watched && state.stats.running == 0)
        });
        if idle {
            self.shared.idle.notify_waiters();
        }
        next
    }

    /// Applies one state change under the lock and publishes its effect on the counts.
    fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        self.update_deferred(change).0
    }

    /// Applies one state change under the lock; its effect on the counts is published
    /// when the returned `Delta` drops.
    fn update_deferred<R>(&self, change: impl FnOnce(&mut State) -> R) -> (R, Delta<'_>) {
        let mut state = self.shared.state();
        let before = state.stats;
        let result = change(&mut state);
        #[cfg(feature = "metrics")]
        let delta = Delta::new(&before, &state.stats, &self.shared.gauges);
        #[cfg(not(feature = "metrics"))]
        let delta = Delta::new(&before, &state.stats);
        drop(state);
        (result, delta)
    }

    pub(crate) fn task_timeout(&self) -> Option<Duration> {
        self.shared.config.task_timeout
    }

    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.shared.cancel
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover rather than cascade if one did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
