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

    /// The settings, for `build`.
    pub(crate) fn into_config(self) -> Config {
        self.config
    }
}
