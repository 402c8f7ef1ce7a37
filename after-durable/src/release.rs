//! Releasing held jobs: one task gathers the ids of every request whose response
//! finished meanwhile and makes them runnable in one statement, so that the
//! hand-off costs a request one write transaction of its own, not two.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::counts::{Counters, bump};
use crate::store::{self, Db};

/// Most ids released by one statement.
const MAX_BATCH: usize = 1000;

#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) ids: Vec<String>,
    /// Answered once the statement has run (or failed, counted and logged).
    pub(crate) done: oneshot::Sender<()>,
}

pub(crate) fn spawn(
    pool: Db,
    counters: Arc<Counters>,
    wake: Arc<Notify>,
) -> mpsc::UnboundedSender<Batch> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut ids = first.ids;
            let mut waiting = vec![first.done];
            while ids.len() < MAX_BATCH {
                let Ok(next) = rx.try_recv() else { break };
                ids.extend(next.ids);
                waiting.push(next.done);
            }
            release_now(&pool, &counters, &wake, &ids).await;
            for done in waiting {
                let _ = done.send(());
            }
        }
    });
    tx
}

pub(crate) async fn release_now(pool: &Db, counters: &Counters, wake: &Notify, ids: &[String]) {
    match store::release(pool, ids).await {
        Ok(n) => {
            bump(&counters.released, n);
            wake.notify_waiters();
        }
        Err(error) => {
            bump(&counters.release_failed, ids.len() as u64);
            tracing::error!(%error, jobs = ids.len(), "after_durable.release_failed: the jobs run when their hold expires");
        }
    }
}
