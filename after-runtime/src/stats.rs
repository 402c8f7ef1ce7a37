//! Counts of what became of every task, how a task ended, and the shutdown report.
//! A leaf: it imports nothing of the engine.

use std::fmt;

use http::Method;

use crate::task::{Location, TaskKey};

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
///
/// It displays as one line, for a log or a status page: every end, then the tasks
/// still pending and running if there are any.
///
/// ```
/// # use after_runtime::Stats;
/// let stats = Stats { registered: 3, running: 1, succeeded: 1, failed: 1, ..Stats::default() };
/// assert_eq!(
///     stats.to_string(),
///     "3 registered: 1 succeeded, 1 failed, 0 panicked, 0 timed out, 0 rejected, \
///      0 cancelled, 0 pending, 1 running",
/// );
/// let idle = Stats { registered: 1, succeeded: 1, ..Stats::default() };
/// assert_eq!(
///     idle.to_string(),
///     "1 registered: 1 succeeded, 0 failed, 0 panicked, 0 timed out, 0 rejected, 0 cancelled",
/// );
/// ```
///
/// With the `serde` feature it is `Serialize` and `Deserialize`, with the field
/// names above, for a `/stats` endpoint or a test fixture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

impl Stats {
    /// The line both `Display`s start with: the counts of every end.
    fn fmt_ends(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} registered: {} succeeded, {} failed, {} panicked, {} timed out, \
             {} rejected, {} cancelled",
            self.registered,
            self.succeeded,
            self.failed,
            self.panicked,
            self.timed_out,
            self.rejected,
            self.cancelled,
        )
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_ends(f)?;
        if self.pending + self.running > 0 {
            write!(f, ", {} pending, {} running", self.pending, self.running)?;
        }
        Ok(())
    }
}

/// The counts of one group of tasks: those with one [name](crate::TaskOptions::name),
/// or the unnamed ones registered at one place. From
/// [`AfterRuntime::task_stats`](crate::AfterRuntime::task_stats), to see which after
/// work fails, times out or is refused.
///
/// Every registered task is in exactly one of the ends or still
/// [in flight](Self::in_flight) (pending or running).
///
/// ```
/// use after_runtime::{TaskKey, TaskStats};
///
/// let mail = TaskStats { registered: 5, succeeded: 3, timed_out: 1, ..TaskStats::new(TaskKey::Name("welcome-mail")) };
/// assert_eq!(mail.in_flight(), 1);
/// assert_eq!(
///     mail.to_string(),
///     "welcome-mail: 5 registered: 1 in flight, 3 succeeded, 0 failed, 0 panicked, \
///      1 timed out, 0 rejected, 0 cancelled",
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TaskStats {
    /// The group: a name, or the place the unnamed tasks were registered.
    pub task: TaskKey,
    /// Tasks registered, including refused ones.
    pub registered: u64,
    /// Tasks that ended in `()` or `Ok(())`.
    pub succeeded: u64,
    /// Tasks that ended in `Err`.
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks cancelled by their timeout.
    pub timed_out: u64,
    /// Registrations refused, and tasks shed for newer ones.
    pub rejected: u64,
    /// Tasks cancelled by a shutdown.
    pub cancelled: u64,
}

impl TaskStats {
    /// No task of the group counted yet.
    ///
    /// ```
    /// # use after_runtime::{TaskKey, TaskStats};
    /// assert_eq!(TaskStats::new(TaskKey::Name("audit")).registered, 0);
    /// ```
    pub fn new(task: TaskKey) -> Self {
        TaskStats {
            task,
            registered: 0,
            succeeded: 0,
            failed: 0,
            panicked: 0,
            timed_out: 0,
            rejected: 0,
            cancelled: 0,
        }
    }

    /// Tasks registered that have not ended yet: pending or running.
    ///
    /// ```
    /// # use after_runtime::{TaskKey, TaskStats};
    /// let audit = TaskStats { registered: 2, failed: 1, ..TaskStats::new(TaskKey::Name("audit")) };
    /// assert_eq!(audit.in_flight(), 1);
    /// ```
    pub fn in_flight(&self) -> u64 {
        self.registered
            - (self.succeeded
                + self.failed
                + self.panicked
                + self.timed_out
                + self.rejected
                + self.cancelled)
    }
}

impl fmt::Display for TaskStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} registered: {} in flight, {} succeeded, {} failed, \
             {} panicked, {} timed out, {} rejected, {} cancelled",
            self.task,
            self.registered,
            self.in_flight(),
            self.succeeded,
            self.failed,
            self.panicked,
            self.timed_out,
            self.rejected,
            self.cancelled,
        )
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

/// What [`AfterRuntime::shutdown`](crate::AfterRuntime::shutdown) leaves behind: the
/// final counts, and the tasks it cancelled.
///
/// ```
/// use std::time::Duration;
/// use after_runtime::AfterRuntime;
///
/// # #[tokio::main] async fn main() {
/// let runtime = AfterRuntime::builder().build();
/// let report = runtime.shutdown(Duration::from_secs(5)).await;
/// assert!(report.unfinished.is_empty());
/// assert_eq!(report.stats.pending + report.stats.running, 0);
/// println!("{report}");
/// # }
/// ```
///
/// It displays as the counts' line (with the tasks a blocked thread left still
/// running, if any), then one line for each unfinished task:
///
/// ```text
/// 3 registered: 1 succeeded, 0 failed, 0 panicked, 0 timed out, 0 rejected, 2 cancelled
///   cancelled: POST /orders, src/orders.rs:42:9
///   cancelled: POST /orders, src/orders.rs:51:9
/// ```
///
/// With the `serde` feature it is `Serialize`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ShutdownReport {
    /// The counts once shutdown returned.
    pub stats: Stats,
    /// Every task counted in `stats.cancelled`, in the order they were cancelled:
    /// those cut off at the deadline (waiting or running), and those whose response
    /// finished after the runtime had closed.
    pub unfinished: Vec<UnfinishedTask>,
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        s.fmt_ends(f)?;
        if s.pending + s.running > 0 {
            write!(
                f,
                ", {} still pending, {} still running",
                s.pending, s.running
            )?;
        }
        for task in &self.unfinished {
            write!(f, "\n  cancelled: {task}")?;
        }
        Ok(())
    }
}

/// A task [`AfterRuntime::shutdown`](crate::AfterRuntime::shutdown) cancelled: where
/// it was registered, and for which request.
///
/// Displays as `METHOD /path, file:line:column`, after the task's name if it has
/// one: `welcome-mail, POST /signup, src/signup.rs:42:9`.
///
/// ```
/// use std::time::Duration;
/// use after_runtime::{AfterLayer, AfterRuntime, after};
/// use axum::{Router, body::Body, http::Request, routing::post};
/// use tower::ServiceExt;
///
/// # #[tokio::main] async fn main() {
/// let runtime = AfterRuntime::builder().build();
/// let app = Router::new()
///     .route("/orders", post(|| async {
///         after(std::future::pending::<()>()).unwrap(); // never ends
///     }))
///     .layer(AfterLayer::new(runtime.clone()));
/// let request = Request::post("/orders").body(Body::empty()).unwrap();
/// drop(app.oneshot(request).await.unwrap()); // the response is done with
///
/// let report = runtime.shutdown(Duration::from_millis(10)).await;
/// let task = &report.unfinished[0];
/// assert_eq!((task.method.as_str(), task.path.as_str()), ("POST", "/orders"));
/// assert_eq!(task.location.file(), file!());
/// # }
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UnfinishedTask {
    /// Where its `after!` block or `after()` call is.
    pub location: Location,
    /// Its [name](crate::TaskOptions::name), if it has one.
    pub name: Option<&'static str>,
    /// Its request's method.
    #[cfg_attr(feature = "serde", serde(serialize_with = "method_str"))]
    pub method: Method,
    /// Its request's path, without the query.
    pub path: String,
}

impl fmt::Display for UnfinishedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name {
            write!(f, "{name}, ")?;
        }
        write!(f, "{} {}, {}", self.method, self.path, self.location)
    }
}

#[cfg(feature = "serde")]
fn method_str<S: serde::Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}
