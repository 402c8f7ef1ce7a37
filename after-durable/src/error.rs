//! The crate's one error type.

use std::fmt;

/// Why a durable call failed.
///
/// ```
/// use after_durable::{after_durable, DurableErrorKind, Job, JobContext, JobError};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
/// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
/// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
/// // Outside a request served under `DurableLayer`:
/// let err = after_durable(Ping).unwrap_err();
/// assert_eq!(err.kind(), DurableErrorKind::NoScope);
/// ```
#[derive(Debug)]
pub struct DurableError {
    kind: DurableErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The kind of a [`DurableError`].
///
/// ```
/// assert_ne!(after_durable::DurableErrorKind::NoScope, after_durable::DurableErrorKind::Database);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurableErrorKind {
    /// `after_durable` was called outside a request served under `DurableLayer`.
    NoScope,
    /// The job could not be serialized.
    Serialize,
    /// The database refused or failed (also: a read-only or locked database).
    Database,
    /// Workers were started with no job registered, or twice for one name.
    Config,
}

impl DurableError {
    pub(crate) fn new(
        kind: DurableErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        DurableError {
            kind,
            source: Some(source.into()),
        }
    }
    pub(crate) fn no_scope() -> Self {
        DurableError {
            kind: DurableErrorKind::NoScope,
            source: None,
        }
    }
    pub(crate) fn database(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DurableError::new(DurableErrorKind::Database, e)
    }
    /// What went wrong.
    ///
    /// ```
    /// # use after_durable::*;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Ping;
    /// # impl Job for Ping { const NAME: &'static str = "ping"; type State = ();
    /// #   async fn run(self, _: JobContext<()>) -> Result<(), JobError> { Ok(()) } }
    /// assert_eq!(after_durable(Ping).unwrap_err().kind(), DurableErrorKind::NoScope);
    /// ```
    pub fn kind(&self) -> DurableErrorKind {
        self.kind
    }
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DurableErrorKind::NoScope => f.write_str(
                "after_durable called outside a request served under DurableLayer (use enqueue with a transaction there)",
            )?,
            DurableErrorKind::Serialize => f.write_str("the job could not be serialized")?,
            DurableErrorKind::Database => f.write_str("the job database failed")?,
            DurableErrorKind::Config => f.write_str("invalid worker configuration")?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DurableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
