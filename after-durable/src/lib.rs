//! Durable after-work for axum: jobs written in the request's transaction, run by
//! workers after the response, surviving a crash.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod counts;
mod durable;
mod error;
mod job;
mod layer;
mod release;
mod scope;
mod store;
mod worker;

pub use config::{OnPersistFailure, Synchronous};
pub use counts::{Counts, StatusCounts};
pub use durable::{Durable, DurableBuilder};
pub use error::{DurableError, DurableErrorKind};
pub use job::{Backoff, Job, JobContext, JobError, JobOptions};
pub use layer::{DurableLayer, DurableService, ResponseFuture};
pub use scope::{Enqueued, after_durable, enqueue};
pub use store::JobInfo;
pub use worker::{UnfinishedJob, WorkerReport, Workers, WorkersBuilder};
