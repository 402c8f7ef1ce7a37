//! The job contract: data that crosses a process, the handler that runs it, and its
//! options (attempts, backoff, idempotency key).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a failed run returns: any error, logged with the job's name and id.
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// Work that survives a crash: serializable data plus the code that runs it, found
/// by its stable [`NAME`](Job::NAME) in whichever process picks the job up (a closure
/// cannot cross a process).
///
/// A job may run more than once (at least once, never exactly once): a crash after
/// its side effect and before its acknowledgement re-runs it. Make `run` idempotent,
/// or give the job an [`idempotency_key`](JobOptions::idempotency_key) and check it
/// where the side effect lands.
///
/// ```
/// use after_durable::{Job, JobContext, JobError, JobOptions};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendReceipt { order_id: i64, email: String }
///
/// impl Job for SendReceipt {
///     const NAME: &'static str = "send-receipt";
///     type State = ();
///     async fn run(self, cx: JobContext<()>) -> Result<(), JobError> {
///         println!("receipt for order {} to {} (attempt {})", self.order_id, self.email, cx.attempt());
///         Ok(())
///     }
///     fn options(&self) -> JobOptions {
///         JobOptions::new().max_attempts(5).idempotency_key(format!("receipt-{}", self.order_id))
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The job's name in the database. Keep it stable across deploys: rows written
    /// under a name are run only by a process that registered a job with that name.
    const NAME: &'static str;
    /// What the workers hand to every run (a pool, a client), given at registration.
    type State: Clone + Send + Sync + 'static;
    /// Runs the job. An `Err` (or a panic) is counted, logged, and retried after the
    /// backoff until [`max_attempts`](JobOptions::max_attempts) runs have failed; then
    /// the job is dead: kept, listed, and requeueable.
    fn run(self, cx: JobContext<Self::State>) -> impl Future<Output = Result<(), JobError>> + Send;
    /// This job's options; read when it is registered (attempts, key) and when a run
    /// fails (backoff).
    fn options(&self) -> JobOptions {
        JobOptions::new()
    }
}

/// What a run gets besides the job's data.
///
/// ```
/// # use after_durable::JobContext;
/// fn log(cx: &JobContext<()>) {
///     println!("job {} attempt {}", cx.id(), cx.attempt());
/// }
/// ```
#[derive(Debug, Clone)]
pub struct JobContext<S> {
    pub(crate) state: S,
    pub(crate) id: String,
    pub(crate) attempt: u32,
}

impl<S> JobContext<S> {
    /// The state given when the job was registered with the workers.
    pub fn state(&self) -> &S {
        &self.state
    }
    /// The job's id (a ULID), the same in every process and every attempt.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Which run this is, from 1. A run re-started after a crash counts as one.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A job's options: how often it may run, how long to wait between failed runs, and
/// an optional idempotency key.
///
/// ```
/// use std::time::Duration;
/// use after_durable::{Backoff, JobOptions};
///
/// let options = JobOptions::new()
///     .max_attempts(3)
///     .backoff(Backoff::exponential(Duration::from_secs(1)))
///     .idempotency_key("order-7-receipt");
/// assert_eq!(options.attempts(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct JobOptions {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) idempotency_key: Option<String>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions::new()
    }
}

impl JobOptions {
    /// 5 attempts, exponential backoff from 1 s, no idempotency key.
    ///
    /// ```
    /// assert_eq!(after_durable::JobOptions::new().attempts(), 5);
    /// ```
    pub fn new() -> Self {
        JobOptions {
            max_attempts: 5,
            backoff: Backoff::exponential(Duration::from_secs(1)),
            idempotency_key: None,
        }
    }
    /// How many runs may fail before the job is dead (at least 1).
    ///
    /// ```
    /// assert_eq!(after_durable::JobOptions::new().max_attempts(0).attempts(), 1);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// The wait after a failed run. It is stored with the job (its next run time), so
    /// a restart does not shorten it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = after_durable::JobOptions::new().backoff(after_durable::Backoff::fixed(Duration::from_secs(2)));
    /// # let _ = o;
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// A key unique per job name: a second registration with the same key writes no
    /// row and is reported as a duplicate.
    ///
    /// ```
    /// let o = after_durable::JobOptions::new().idempotency_key("order-7");
    /// assert_eq!(o.key(), Some("order-7"));
    /// ```
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// The configured number of attempts.
    ///
    /// ```
    /// assert_eq!(after_durable::JobOptions::new().max_attempts(2).attempts(), 2);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The configured idempotency key.
    ///
    /// ```
    /// assert_eq!(after_durable::JobOptions::new().key(), None);
    /// ```
    pub fn key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
}

/// The wait before the next run after a failure.
///
/// The database keeps run times in whole seconds: a wait is rounded up to the next
/// second, so a run never comes earlier than the backoff says.
///
/// ```
/// use std::time::Duration;
/// use after_durable::Backoff;
///
/// let b = Backoff::exponential(Duration::from_secs(1));
/// assert_eq!(b.delay(1), Duration::from_secs(1)); // after the first failed run
/// assert_eq!(b.delay(2), Duration::from_secs(2));
/// assert_eq!(b.delay(3), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    exponential: bool,
    max: Duration,
}

impl Backoff {
    /// `base`, then twice that, four times, ... up to one hour.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Backoff::exponential(Duration::from_secs(60));
    /// assert_eq!(b.delay(10), Duration::from_secs(3600));
    /// ```
    pub fn exponential(base: Duration) -> Self {
        Backoff {
            base,
            exponential: true,
            max: Duration::from_secs(3600),
        }
    }
    /// The same wait after every failure.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = after_durable::Backoff::fixed(Duration::from_secs(5));
    /// assert_eq!(b.delay(4), Duration::from_secs(5));
    /// ```
    pub fn fixed(delay: Duration) -> Self {
        Backoff {
            base: delay,
            exponential: false,
            max: delay,
        }
    }
    /// The wait after the `failures`-th failed run (from 1).
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(after_durable::Backoff::fixed(Duration::ZERO).delay(1), Duration::ZERO);
    /// ```
    pub fn delay(&self, failures: u32) -> Duration {
        if !self.exponential {
            return self.base;
        }
        let shift = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << shift).min(self.max)
    }
}
