//! Configuring an [`AfterRuntime`](crate::AfterRuntime): the settings, their defaults,
//! and the [`Builder`] that fills them.
//!
//! A leaf: it imports nothing of the engine. `Builder::build`, which makes the
//! runtime, is written in `runtime/mod.rs`, so the arrow points from the runtime to
//! its settings and never back.

use std::time::Duration;

/// The settings a runtime runs by, as the [`Builder`] filled them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_concurrency: usize,
    pub(crate) max_pending: usize,
    pub(crate) max_pending_per_request: usize,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) overload: OverloadPolicy,
    pub(crate) threads: Threads,
    /// For `Threads::Dedicated`.
    pub(crate) thread_priority: ThreadPriority,
    pub(crate) thread_name: String,
}

/// Where the runtime's tasks run.
#[derive(Debug, Clone)]
pub(crate) enum Threads {
    /// Each on the tokio runtime that served its request.
    Serving,
    /// On a tokio runtime the `AfterRuntime` starts and owns.
    Dedicated(usize),
    /// On a tokio runtime the application already has.
    Handle(tokio::runtime::Handle),
}

/// The scheduling priority of the threads started by
/// [`Builder::dedicated_threads`]: below the request path's, so after work uses the
/// CPU the server leaves idle.
///
/// Linux only; elsewhere every value leaves the threads as they are. Lowering a
/// thread's priority needs no privilege. Should the OS refuse anyway (a seccomp
/// filter, a container that forbids it), a warning is logged once and the threads
/// run at the priority they inherited.
///
/// ```
/// use after_runtime::{AfterRuntime, ThreadPriority};
///
/// let runtime = AfterRuntime::builder()
///     .dedicated_threads(1)
///     .thread_priority(ThreadPriority::Nice(10))
///     .build();
/// # let _ = runtime;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThreadPriority {
    /// Linux's `SCHED_IDLE` policy: the threads get a core only when no normal thread
    /// wants it. The default: measured on a busy 2-core server, 1 ms of CPU after
    /// each request left other requests' p50 latency within about 1.2x and p99 within
    /// about 1.1x of a no-op task's, against up to 1.8x at nice +10. The cost: under a
    /// load that keeps every core busy, after work waits until the load lets up
    /// (the task timeout still applies to it).
    #[default]
    Idle,
    /// The normal policy at this nice value, from -20 (highest) to 19 (lowest);
    /// values outside are clamped. Positive values lower the priority without
    /// starving the threads; negative ones need `CAP_SYS_NICE`.
    Nice(i8),
    /// The priority the thread that built the runtime had.
    Inherit,
}

/// What happens to a registration when `max_pending` tasks are already waiting.
///
/// ```
/// use after_runtime::{AfterRuntime, OverloadPolicy};
///
/// let runtime = AfterRuntime::builder().overload_policy(OverloadPolicy::Reject).build();
/// # let _ = runtime;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OverloadPolicy {
    /// Refuse the new task: it is counted in `rejected`, logged at error level, and
    /// `after()` returns [`AfterErrorKind::Overloaded`](crate::AfterErrorKind::Overloaded).
    ///
    /// The default, because it is the only choice that neither waits (registration
    /// must never delay a response) nor grows memory without bound, and it tells the
    /// caller at once.
    #[default]
    Reject,
    /// Make room by dropping the task that has waited longest for a concurrency
    /// slot: it is dropped unrun, counted in `rejected` and logged at error level,
    /// and the new task is taken. When no task waits for a slot (every waiting task
    /// still waits for its response), the new one is refused as with
    /// [`Reject`](Self::Reject).
    ///
    /// For work whose worth fades with age (cache refreshes, presence updates,
    /// notifications a newer one supersedes): under a lasting overload the newest
    /// tasks run, instead of the newest being turned away while stale ones wait.
    /// Only tasks waiting for a slot are shed, oldest first, as they wait in that
    /// order; a task still waiting for its response is held by its request, which
    /// `max_pending_per_request` already bounds.
    ///
    /// ```
    /// use after_runtime::{AfterRuntime, OverloadPolicy};
    ///
    /// let runtime = AfterRuntime::builder()
    ///     .max_pending(1_000)
    ///     .overload_policy(OverloadPolicy::ShedOldest)
    ///     .build();
    /// # let _ = runtime;
    /// ```
    ShedOldest,
}

/// Builds an [`AfterRuntime`](crate::AfterRuntime); from
/// [`AfterRuntime::builder`](crate::AfterRuntime::builder).
///
/// ```
/// use std::time::Duration;
/// use after_runtime::AfterRuntime;
///
/// let runtime = AfterRuntime::builder()
///     .max_concurrency(64)
///     .max_pending(5_000)
///     .task_timeout(Duration::from_secs(10))
///     .build();
/// # let _ = runtime;
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config {
                max_concurrency: Builder::DEFAULT_MAX_CONCURRENCY,
                max_pending: Builder::DEFAULT_MAX_PENDING,
                max_pending_per_request: Builder::DEFAULT_MAX_PENDING_PER_REQUEST,
                task_timeout: Some(Builder::DEFAULT_TASK_TIMEOUT),
                overload: OverloadPolicy::Reject,
                threads: Threads::Serving,
                thread_priority: ThreadPriority::Idle,
                thread_name: "after-worker".into(),
            },
        }
    }
}

impl Builder {
    /// 256 tasks at once: after work is mostly I/O (a database row, an HTTP call), so
    /// many can overlap, but not so many that they exhaust a connection pool sized for
    /// the handlers.
    ///
    /// ```
    /// # use after_runtime::Builder;
    /// assert_eq!(Builder::DEFAULT_MAX_CONCURRENCY, 256);
    /// ```
    pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
    /// 10,000 waiting tasks: a burst of several seconds at typical rates fits, while a
    /// few hundred bytes each keeps the worst case to a few megabytes.
    ///
    /// ```
    /// # use after_runtime::Builder;
    /// assert_eq!(Builder::DEFAULT_MAX_PENDING, 10_000);
    /// ```
    pub const DEFAULT_MAX_PENDING: usize = 10_000;
    /// 64 tasks held by one request while its response is unfinished: far more than
    /// a handler registers (put a loop's work in one block), and few enough that a
    /// client that stops reading its response holds a small share: it takes 157
    /// stalled responses to fill the default `max_pending`.
    ///
    /// ```
    /// # use after_runtime::Builder;
    /// assert_eq!(Builder::DEFAULT_MAX_PENDING_PER_REQUEST, 64);
    /// ```
    pub const DEFAULT_MAX_PENDING_PER_REQUEST: usize = 64;
    /// 60 seconds: long enough for a slow webhook, short enough that a hung task does
    /// not hold a concurrency slot (and a shutdown) forever.
    ///
    /// ```
    /// # use after_runtime::Builder;
    /// assert_eq!(Builder::DEFAULT_TASK_TIMEOUT.as_secs(), 60);
    /// ```
    pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(60);

    /// The most tasks running at once; further released tasks wait, in order, for a
    /// slot. Values below 1 are treated as 1.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().max_concurrency(8).build();
    /// # let _ = runtime;
    /// ```
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.config.max_concurrency = max.max(1);
        self
    }

    /// The most tasks waiting at once, both for their response to finish and for a
    /// slot: what bounds the memory tasks hold. A registration past it goes to the
    /// [`OverloadPolicy`], except one that can start at once (a task nested in a
    /// running one, or registered after its response finished, when a slot is free).
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().max_pending(100).build();
    /// # let _ = runtime;
    /// ```
    pub fn max_pending(mut self, max: usize) -> Self {
        self.config.max_pending = max;
        self
    }

    /// The most tasks one request may hold while its response is not finished; past
    /// it, a registration is rejected ([`AfterErrorKind::Overloaded`](crate::AfterErrorKind::Overloaded),
    /// counted and logged). A client that stops reading a streamed response keeps
    /// its request's tasks waiting: this keeps a handful of such clients from
    /// filling `max_pending` and turning every other request's registrations away.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().max_pending_per_request(8).build();
    /// # let _ = runtime;
    /// ```
    pub fn max_pending_per_request(mut self, max: usize) -> Self {
        self.config.max_pending_per_request = max;
        self
    }

    /// How long one task may run before it is cancelled and counted as timed out.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().task_timeout(Duration::from_secs(5)).build();
    /// # let _ = runtime;
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// Lets tasks run as long as they like; only a shutdown deadline stops them.
    ///
    /// ```
    /// # use after_runtime::AfterRuntime;
    /// let runtime = AfterRuntime::builder().no_task_timeout().build();
    /// # let _ = runtime;
    /// ```
    pub fn no_task_timeout(mut self) -> Self {
        self.config.task_timeout = None;
        self
    }

    /// What to do with a registration past `max_pending`.
    ///
    /// ```
    /// # use after_runtime::{AfterRuntime, OverloadPolicy};
    /// let runtime = AfterRuntime::builder().overload_policy(OverloadPolicy::Reject).build();
    /// # let _ = runtime;
    /// ```
    pub fn overload_policy(mut self, policy: OverloadPolicy) -> Self {
        self.config.overload = policy;
        self
    }

    /// Runs the tasks on `threads` threads of their own, in a tokio runtime this
    /// `AfterRuntime` starts when built and stops when shut down, or when its last
    /// handle is dropped. Values below 1 are treated as 1.
    ///
    /// Without it (the default), each task runs on the tokio runtime that served its
    /// request, beside the connections. That is the cheapest choice for after work
    /// that mostly waits (a database row, an HTTP call), and tokio's scheduler gives
    /// it a fair share. Work that spends CPU (rendering an e-mail, hashing,
    /// serialising, compressing) runs each poll to completion on a worker the
    /// connections also need: 1 ms of CPU after each request of a saturating load
    /// made other requests' median latency 136 times a no-op task's on a
    /// 2-core server. On threads of its own, at [`ThreadPriority::Idle`] (the
    /// default, see [`thread_priority`](Self::thread_priority)), the OS runs the
    /// request path first: under the same load, other requests' p50 and p99 stayed
    /// at or below a no-op task's (the README's performance table). The price: the
    /// after work gets only the CPU the request path leaves, a task's start costs a
    /// wake-up on another thread (without this setting, the per-request cost is
    /// unchanged), and the threads exist even when idle.
    ///
    /// The threads stop when [`shutdown`](crate::AfterRuntime::shutdown) has
    /// drained, which waits for them to end, or when the last handle is dropped
    /// (tasks hold one while they wait or run).
    ///
    /// Resources made on the serving runtime (a `sqlx` pool, a `reqwest` client, a
    /// hyper connection) work from these threads: tokio I/O stays registered with the
    /// reactor of the runtime that created it, which goes on driving it. That costs a
    /// wake-up across runtimes per readiness event, and such a resource stops working
    /// once the serving runtime is dropped. Timers and sockets a task creates belong
    /// to the dedicated runtime; they end with it at shutdown.
    ///
    /// Overrides [`handle`](Self::handle).
    ///
    /// ```
    /// use after_runtime::AfterRuntime;
    ///
    /// # #[tokio::main] async fn main() {
    /// let runtime = AfterRuntime::builder().dedicated_threads(1).build();
    /// // ... serve requests under `AfterLayer::new(runtime.clone())` ...
    /// runtime.shutdown(std::time::Duration::from_secs(30)).await; // joins the thread
    /// # }
    /// ```
    pub fn dedicated_threads(mut self, threads: usize) -> Self {
        self.config.threads = Threads::Dedicated(threads.max(1));
        self
    }

    /// The scheduling priority of the [`dedicated_threads`](Self::dedicated_threads)
    /// (default [`ThreadPriority::Idle`]). Has no effect without them: the threads of
    /// a runtime given by [`handle`](Self::handle) are the application's.
    ///
    /// ```
    /// use after_runtime::{AfterRuntime, ThreadPriority};
    ///
    /// let runtime = AfterRuntime::builder()
    ///     .dedicated_threads(2)
    ///     .thread_priority(ThreadPriority::Nice(10))
    ///     .build();
    /// # let _ = runtime;
    /// ```
    pub fn thread_priority(mut self, priority: ThreadPriority) -> Self {
        self.config.thread_priority = priority;
        self
    }

    /// The name of the [`dedicated_threads`](Self::dedicated_threads) (default
    /// `"after-worker"`), as debuggers, `top -H` and `/proc/<pid>/task/*/comm` show
    /// it; Linux keeps its first 15 bytes.
    ///
    /// ```
    /// use after_runtime::AfterRuntime;
    ///
    /// let runtime = AfterRuntime::builder()
    ///     .dedicated_threads(1)
    ///     .thread_name("mailer")
    ///     .build();
    /// # let _ = runtime;
    /// ```
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.config.thread_name = name.into();
        self
    }

    /// Runs the tasks on a tokio runtime the application already has, for example
    /// one it built for background work, instead of on the runtime that served each
    /// request. The application keeps it running until this `AfterRuntime` is shut
    /// down: tasks started on a runtime that has stopped are counted as cancelled.
    ///
    /// Overrides [`dedicated_threads`](Self::dedicated_threads).
    ///
    /// ```
    /// use after_runtime::AfterRuntime;
    ///
    /// let background = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(1)
    ///     .enable_all()
    ///     .build()
    ///     .unwrap();
    /// let runtime = AfterRuntime::builder().handle(background.handle().clone()).build();
    /// # let _ = runtime;
    /// ```
    pub fn handle(mut self, handle: tokio::runtime::Handle) -> Self {
        self.config.threads = Threads::Handle(handle);
        self
    }

    /// The settings, for `build`.
    pub(crate) fn into_config(self) -> Config {
        self.config
    }
}
