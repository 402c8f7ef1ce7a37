//! The runtime: the handle, its public API, and the calls the scope and the executor
//! make into it.
//!
//! - `mod.rs` (here): [`AfterRuntime`], the lock around the state, and each call
//!   that changes it (admit, submit, dispatch, finish) with what must happen once
//!   the lock is let go: spawning, logging, dropping unrun tasks, publishing counts.
//! - `state.rs`: the state and its changes, plain data, tested on their own.
//! - `shutdown.rs`: [`AfterRuntime::shutdown`], phase by phase.
//! - `threads.rs`: the threads of `dedicated_threads`, started with the runtime and
//!   stopped with it.
//!
//! Two cycles go through here, both because the work is shared. The runtime and the
//! scope: the scope admits each registration into the runtime, and the runtime
//! holds released tasks with their scope and, at the shutdown deadline, takes back
//! the tasks of scopes whose responses never finished. The runtime and the executor:
//! the runtime starts each task through the executor, and the executor reports the
//! task's end back, which frees the slot for the next one.

mod shutdown;
mod state;
mod threads;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use self::state::{Queued, Shed, Split, State, Submitted};
use crate::config::{Builder, Config, Threads};
use crate::error::AfterError;
use crate::executor;
use crate::job::{Job, Jobs};
use crate::log::{Cancelled, Event};
use crate::metrics::Delta;
use crate::request::RequestInfo;
use crate::scope::RequestScope;
use crate::stats::{End, ShutdownReport, Stats, TaskStats};
use crate::task::Site;

pub(crate) use self::state::WaitingKey;

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

struct Shared {
    config: Config,
    state: Mutex<State>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Signalled when the last running task ends, for a shutdown, and when nothing
    /// is left pending or running, for `wait_idle`.
    idle: Notify,
    /// Signalled when a `shutdown` call brings the deadline forward.
    deadline_moved: Notify,
    #[cfg(feature = "metrics")]
    gauges: crate::metrics::Gauges,
    /// Where tasks are spawned, when the builder named a runtime (threads of its
    /// own, or a handle); else each on the runtime that served its request.
    spawner: Option<tokio::runtime::Handle>,
    /// The threads of `dedicated_threads`: stopped by `shutdown`, or on drop.
    /// Declared last, so it drops once everything else has.
    own_threads: Option<threads::OwnThreads>,
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
    /// on the tokio runtime that served their request, unless
    /// [`dedicated_threads`](Self::dedicated_threads) or [`handle`](Self::handle)
    /// says otherwise.
    ///
    /// # Panics
    ///
    /// With `dedicated_threads`, if the threads cannot be started (the OS refuses a
    /// thread or an I/O driver); [`try_build`](Self::try_build) returns that error
    /// instead.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().build();
    /// assert_eq!(runtime.stats().registered, 0);
    /// ```
    pub fn build(self) -> AfterRuntime {
        self.try_build()
            .expect("after-runtime: could not start its dedicated threads")
    }

    /// Builds the runtime, or says why its
    /// [`dedicated_threads`](Self::dedicated_threads) could not be started.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().dedicated_threads(1).try_build()?;
    /// # drop(runtime);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_build(self) -> std::io::Result<AfterRuntime> {
        let config = self.into_config();
        let (spawner, own_threads) = match &config.threads {
            Threads::Serving => (None, None),
            Threads::Handle(handle) => (Some(handle.clone()), None),
            Threads::Dedicated(n) => {
                let (threads, handle) =
                    threads::OwnThreads::start(*n, config.thread_priority, &config.thread_name)?;
                (Some(handle), Some(threads))
            }
        };
        Ok(AfterRuntime {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(config.clone())),
                config,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                idle: Notify::new(),
                deadline_moved: Notify::new(),
                #[cfg(feature = "metrics")]
                gauges: crate::metrics::Gauges::default(),
                spawner,
                own_threads,
            }),
        })
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

    /// A consistent snapshot of the counts: the terminal counts plus `pending` and
    /// `running` add up to `registered`.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let stats = AfterRuntime::builder().build().stats();
    /// assert_eq!(stats.settled() + stats.pending + stats.running, stats.registered);
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.state().stats()
    }

    /// The counts of each group of tasks: those with one
    /// [name](crate::TaskOptions::name), or the unnamed ones registered at one place;
    /// named groups first, then by name or location. A group appears once its first
    /// task is registered.
    ///
    /// ```
    /// use std::time::Duration;
    /// use after_runtime::{AfterLayer, AfterRuntime, TaskKey, TaskOptions, after_with};
    /// use axum::{Router, body::Body, http::Request, routing::post};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main] async fn main() {
    /// let runtime = AfterRuntime::builder().build();
    /// let app = Router::new()
    ///     .route("/signup", post(|| async {
    ///         let mail = TaskOptions::new().name("welcome-mail");
    ///         after_with(mail, async { Err::<(), _>("relay refused") }).unwrap();
    ///     }))
    ///     .layer(AfterLayer::new(runtime.clone()));
    /// let request = Request::post("/signup").body(Body::empty()).unwrap();
    /// drop(app.oneshot(request).await.unwrap());
    /// runtime.wait_idle().await;
    ///
    /// let mail = runtime.task_stats()[0];
    /// assert_eq!(mail.task, TaskKey::Name("welcome-mail"));
    /// assert_eq!((mail.registered, mail.failed), (1, 1));
    /// # }
    /// ```
    pub fn task_stats(&self) -> Vec<TaskStats> {
        self.shared.state().task_stats()
    }

    /// Waits until no task is pending or running, and leaves the runtime as it is:
    /// it goes on taking tasks. For tests and scripts that check what the after work
    /// did; a server drains with [`shutdown`](Self::shutdown).
    ///
    /// A task is pending until its response is finished: its body read to the end, or
    /// dropped. So a test that still holds a `Response` holds its tasks, and
    /// `wait_idle` waits for them; read or drop the body first. Tasks that are still
    /// running register nested ones, which it waits for too. It returns at once when
    /// nothing is pending or running.
    ///
    /// ```
    /// use after_runtime::{AfterLayer, AfterRuntime, after};
    /// use axum::{Router, body::Body, http::Request, routing::post};
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main] async fn main() {
    /// let runtime = AfterRuntime::builder().build();
    /// let sent = Arc::new(AtomicBool::new(false));
    /// let flag = sent.clone();
    /// let app = Router::new()
    ///     .route("/signup", post(move || async move {
    ///         after(async move { flag.store(true, Ordering::SeqCst) }).unwrap();
    ///         "welcome"
    ///     }))
    ///     .layer(AfterLayer::new(runtime.clone()));
    ///
    /// let request = Request::post("/signup").body(Body::empty()).unwrap();
    /// drop(app.oneshot(request).await.unwrap()); // done with the response
    /// runtime.wait_idle().await;
    /// assert!(sent.load(Ordering::SeqCst));
    /// assert_eq!(runtime.stats().succeeded, 1);
    /// # }
    /// ```
    pub async fn wait_idle(&self) {
        /// Counts this call as waiting while it lives, however it ends.
        struct Watching<'a>(&'a AfterRuntime);
        impl Drop for Watching<'_> {
            fn drop(&mut self) {
                self.0.shared.state().watch_idle(false);
            }
        }

        self.shared.state().watch_idle(true);
        let _watching = Watching(self);
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let stats = self.stats();
            if stats.pending + stats.running == 0 {
                self.publish_gauges();
                return;
            }
            idle.await;
        }
    }

    /// Stops taking new tasks once every pending and running one has ended, waiting at
    /// most `grace`; then cancels what remains and reports it.
    ///
    /// Tasks registered while draining (nested in running tasks, or by requests the
    /// server is still finishing) are accepted and waited for. At the deadline,
    /// waiting tasks (for a slot, or for a response that has not finished) are
    /// dropped unrun and running ones are cancelled at their next `.await`; each is
    /// counted in `cancelled` and its `file:line` listed in the report. Afterwards
    /// every registration is rejected with
    /// [`AfterErrorKind::ShutDown`](crate::AfterErrorKind::ShutDown), and tasks of
    /// responses that finish later are cancelled.
    ///
    /// Any `grace` works, `Duration::MAX` included (no deadline). Every caller returns
    /// once the runtime is fully shut down, with the same final report: a call made
    /// while another drains joins it, and the earliest deadline any caller gave
    /// applies to both; a call made afterwards returns at once.
    ///
    /// A cancelled task that does not reach its next `.await` within 5 seconds (it
    /// blocks its thread) is left behind: `shutdown` returns and the report counts it
    /// as still running.
    ///
    /// With [`dedicated_threads`](crate::Builder::dedicated_threads), it then stops
    /// those threads and waits until they have ended (for at most 5 seconds more,
    /// and not at all if a task is left behind, or when called from a task on those
    /// threads). Called from inside a request under the layer, it waits for
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
        shutdown::run(self, grace).await
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
    /// The caller may hold the scope's lock, so what may run any code waits in the
    /// returned [`Unlocked`] until the caller drops it: publishing the counts, and
    /// dropping a task shed to make room.
    pub(crate) fn admit(
        &self,
        scope: &Arc<RequestScope>,
        site: Site,
        held: usize,
        first: bool,
    ) -> (Result<Option<WaitingKey>, AfterError>, Unlocked<'_>) {
        let (admitted, counts) =
            self.update_deferred(|state| state.admit(scope, site, held, first));
        let unlocked = Unlocked {
            _counts: counts,
            shed: admitted.shed,
        };
        (admitted.result, unlocked)
    }

    /// Registers a task whose response is already finished (a nested task, or one
    /// registered late by a handler moved off its request): it starts now when a
    /// slot is free, whatever the number waiting; else it waits for a slot, within
    /// `max_pending`.
    pub(crate) fn submit(&self, scope: &Arc<RequestScope>, job: Job) -> Result<(), AfterError> {
        let (submitted, counts) = self.update_deferred(|state| state.submit(scope, job));
        drop(counts);
        match submitted {
            Submitted::Start(job) => self.start_on(scope.clone(), job),
            Submitted::Queued { shed } => drop_shed(shed),
            Submitted::Refused(error, job) => {
                scope.log(job.site, Event::Rejected(&error));
                job.drop_unrun(&scope.request);
                return Err(error);
            }
        }
        Ok(())
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
        let start = match self.update(|state| state.release(&scope, waiting, jobs)) {
            Split::AllStart(all) => all,
            Split::Some { start, cancelled } => {
                for job in cancelled {
                    scope.log(job.site, Event::Cancelled(Cancelled::ReleasedAfterShutdown));
                    // Dropped here, outside the lock: its captures may run any code.
                    job.drop_unrun(&scope.request);
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

    /// Whether tasks are spawned on the runtime the builder named (threads of its
    /// own, or a handle), so a request's own tokio runtime is not needed.
    pub(crate) fn spawns_elsewhere(&self) -> bool {
        self.shared.spawner.is_some()
    }

    /// Spawns on the runtime the builder named, else on the tokio runtime that
    /// served the task's request: wherever the response finished (a body may be
    /// dropped on a thread outside any runtime) and wherever a sibling ended, for a
    /// queued task. (Not `tokio::spawn`: a request's future may be dropped,
    /// releasing its tasks, where a task id is set but no runtime is, as when a
    /// `LocalSet` outlives its runtime.)
    fn start_on(&self, scope: Arc<RequestScope>, job: Job) {
        if let Some(spawner) = &self.shared.spawner {
            drop(spawner.spawn(executor::run(scope, job)));
            return;
        }
        match scope.request.handle.clone() {
            // Spawned as is: the task's future is small (its timer and cancellation
            // wait are boxed, and built only if it waits). Not tracked by the
            // `TaskTracker`: `running` counts it, and `shutdown` waits for that to
            // reach zero. A runtime that has stopped drops it unpolled, and its
            // guard counts it as cancelled.
            Some(handle) => drop(handle.spawn(executor::run(scope, job))),
            None => {
                let site = job.site;
                scope.log(site, Event::Cancelled(Cancelled::NoTokioRuntime));
                self.finish(End::Cancelled, site, &scope.request);
            }
        }
    }

    /// A running task ended: counts it and starts the next waiting one.
    pub(crate) fn finish(&self, end: End, site: Site, request: &RequestInfo) {
        let Some(next) = self.finish_one(end, site, request) else {
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
    fn finish_one(&self, end: End, site: Site, request: &RequestInfo) -> Option<Queued> {
        self.update(|state| state.finish(end, site, request))
    }

    /// Applies one state change under the lock and publishes its effect on the counts.
    fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        self.update_deferred(change).0
    }

    /// Applies one state change under the lock; its effect on the counts is published
    /// when the returned `Delta` drops.
    fn update_deferred<R>(&self, change: impl FnOnce(&mut State) -> R) -> (R, Delta<'_>) {
        let mut state = self.shared.state();
        let before = state.stats();
        let result = change(&mut state);
        let wake = state.idle_and_watched();
        #[cfg(feature = "metrics")]
        let delta = Delta::new(&before, &state.stats(), &self.shared.gauges);
        #[cfg(not(feature = "metrics"))]
        let delta = Delta::new(&before, &state.stats());
        drop(state);
        if wake {
            self.shared.idle.notify_waiters();
        }
        (result, delta)
    }

    /// Publishes the gauges' changes still on their way (with the `metrics`
    /// feature), so that once `shutdown` or `wait_idle` returns, a scrape reads what
    /// `stats()` does.
    fn publish_gauges(&self) {
        #[cfg(feature = "metrics")]
        self.shared.gauges.flush();
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

/// What an admission leaves for after the caller's locks: its counts, published,
/// and a task shed to make room, logged and dropped.
#[must_use]
pub(crate) struct Unlocked<'a> {
    /// Published when dropped, after the shed task.
    _counts: Delta<'a>,
    shed: Option<Shed>,
}

impl Drop for Unlocked<'_> {
    #[inline]
    fn drop(&mut self) {
        drop_shed(self.shed.take());
    }
}

/// Logs and drops a task shed to make room for a newer one, if there is one.
#[inline]
fn drop_shed(shed: Option<Shed>) {
    if let Some(shed) = shed {
        log_and_drop_shed(*shed);
    }
}

/// Cold: shedding happens only under `OverloadPolicy::ShedOldest` past `max_pending`.
#[cold]
fn log_and_drop_shed((scope, job): Queued) {
    scope.log(job.site, Event::Shed);
    job.drop_unrun(&scope.request);
}
