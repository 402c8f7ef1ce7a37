//! The pool after-durable opens: every connection has the configured `synchronous`,
//! WAL and a busy timeout (apalis's own setup would turn `synchronous` off).

mod support;

use std::time::Duration;

use after_durable::{Durable, Synchronous};
use support::TempDb;

#[tokio::test]
async fn every_pooled_connection_reports_the_configured_synchronous() {
    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        let db = TempDb::new("pragmas");
        let durable = Durable::builder()
            .synchronous(synchronous)
            .max_connections(4)
            .busy_timeout(Duration::from_millis(1500))
            .open(&db.url())
            .await
            .unwrap();
        // Hold all four at once, so that each is a different connection.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(durable.pool().acquire().await.unwrap());
        }
        for conn in &mut held {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(sync, synchronous.pragma_value(), "{synchronous:?}");
            assert_eq!(journal, "wal");
            assert_eq!(busy, 1500);
        }
        drop(held);
        durable.close(Duration::from_secs(5)).await;
    }
}
