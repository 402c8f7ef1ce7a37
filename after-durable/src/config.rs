//! Settings of a [`Durable`](crate::Durable), set through its builder.

use std::time::Duration;

/// SQLite's `synchronous` setting on every pooled connection.
///
/// ```
/// assert_eq!(after_durable::Synchronous::default(), after_durable::Synchronous::Normal);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// With WAL, a commit survives a process crash; a power loss may roll back the
    /// last commits. SQLite's advice for WAL, and the default.
    #[default]
    Normal,
    /// Every commit is synced to disk before it returns: survives a power loss too,
    /// at the cost of one fsync per commit.
    Full,
}

impl Synchronous {
    /// The value `PRAGMA synchronous` reports for this setting.
    ///
    /// ```
    /// assert_eq!(after_durable::Synchronous::Full.pragma_value(), 2);
    /// ```
    pub fn pragma_value(self) -> i64 {
        match self {
            Synchronous::Normal => 1,
            Synchronous::Full => 2,
        }
    }
}

/// What the client gets when a request's jobs cannot be written.
///
/// Either way the failure is counted (`persist_failed`) and logged at error level.
///
/// ```
/// assert_eq!(after_durable::OnPersistFailure::default(), after_durable::OnPersistFailure::ServiceUnavailable);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnPersistFailure {
    /// Replace the response with an empty `503 Service Unavailable`: the client knows
    /// the work was not taken and may retry.
    #[default]
    ServiceUnavailable,
    /// Keep the handler's response: the client is not told.
    KeepResponse,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) hold: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) missed_heartbeats: u32,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_connections: u32,
    pub(crate) on_persist_failure: OnPersistFailure,
    pub(crate) read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hold: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            heartbeat: Duration::from_secs(30),
            missed_heartbeats: 2,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            max_connections: 8,
            on_persist_failure: OnPersistFailure::ServiceUnavailable,
            read_only: false,
        }
    }
}

impl Config {
    /// A worker silent this long has its running jobs taken back.
    pub(crate) fn orphaned_after(&self) -> Duration {
        self.heartbeat * self.missed_heartbeats
    }
}
