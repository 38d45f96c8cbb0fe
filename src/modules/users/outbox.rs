//! The relay that moves `users_outbox` rows to an [`EventPublisher`]. A row is marked published
//! only after delivery succeeded, so a crash or an unreachable consumer delays events, never
//! loses them; consumers deduplicate by event id, so a redelivery after a crash is harmless.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::store;
use crate::platform::{
    db::{Db, DbError},
    now,
};
use modkit::events::{DeliveryError, DomainEvent, EventPublisher};

const BATCH: i64 = 100;

/// Why the relay stopped short; it tries again at the next wake-up or poll.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("outbox row {id} is unreadable: {why}")]
    Unreadable { id: String, why: String },
    #[error("delivery of {id} ({topic}) failed: {source}")]
    Delivery {
        id: uuid::Uuid,
        topic: String,
        source: DeliveryError,
    },
}

/// Publishes the users module's outbox rows, in order, at least once.
pub struct OutboxRelay {
    db: Db,
    publisher: Arc<dyn EventPublisher>,
    wakeup: Arc<Notify>,
    poll_interval: Duration,
}

impl OutboxRelay {
    /// A relay of `db`'s outbox to `publisher`, woken by `wakeup`, polling every `poll_interval`.
    pub fn new(
        db: Db,
        publisher: Arc<dyn EventPublisher>,
        wakeup: Arc<Notify>,
        poll_interval: Duration,
    ) -> Self {
        Self {
            db,
            publisher,
            wakeup,
            poll_interval,
        }
    }

    /// Runs until the process ends: drains at start (rows left by a crash), whenever woken,
    /// and every poll interval (rows whose delivery failed earlier).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.drain().await {
                    Ok(0) => {}
                    Ok(sent) => tracing::debug!(sent, "outbox relayed"),
                    Err(err) => tracing::warn!(error = %err, "outbox relay stalled; will retry"),
                }
                tokio::select! {
                    _ = self.wakeup.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        })
    }

    /// Publishes pending rows in order; stops at the first failure so order is kept.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut sent = 0;
        loop {
            let (batch_sent, batch_len) = if self.db.backend() == "postgres" {
                self.drain_claimed_batch().await?
            } else {
                self.drain_batch().await?
            };
            sent += batch_sent;
            if batch_len < BATCH as usize {
                return Ok(sent);
            }
        }
    }

    /// One batch without row locks: SQLite has a single writer, and holding its write lock
    /// while publishing would block the very handlers an in-process publish calls.
    async fn drain_batch(&self) -> Result<(usize, usize), RelayError> {
        let rows = self
            .db
            .run(|conn| store::pending_outbox(conn, BATCH).map_err(DbError::from))
            .await?;
        let len = rows.len();
        let mut sent = 0;
        for row in rows {
            let event = event_of(&row)?;
            let id = row.id.clone();
            let delivered = self.publisher.publish(&event).await;
            let failed = delivered.is_err();
            self.db
                .run(move |conn| {
                    if failed {
                        store::record_failed_attempt(conn, &id)
                    } else {
                        store::mark_published(conn, &id, now())
                    }
                    .map_err(DbError::from)
                })
                .await?;
            if let Err(source) = delivered {
                return Err(RelayError::Delivery {
                    id: event.id,
                    topic: event.topic,
                    source,
                });
            }
            sent += 1;
        }
        Ok((sent, len))
    }

    /// One batch claimed with `FOR UPDATE SKIP LOCKED` (PostgreSQL): the rows stay locked while
    /// they are published and marked, so concurrent relays split the work instead of doubling it.
    async fn drain_claimed_batch(&self) -> Result<(usize, usize), RelayError> {
        let publisher = self.publisher.clone();
        let runtime = tokio::runtime::Handle::current();
        let (sent, len, failure) = self
            .db
            .write(move |conn| {
                let rows = store::claim_pending_outbox(conn, BATCH)?;
                let mut sent = 0;
                for row in &rows {
                    let event = match event_of(row) {
                        Ok(event) => event,
                        Err(failure) => return Ok((sent, rows.len(), Some(failure))),
                    };
                    // On the blocking pool, so waiting for the publish here blocks no worker.
                    if let Err(source) = runtime.block_on(publisher.publish(&event)) {
                        store::record_failed_attempt(conn, &row.id)?;
                        let failure = RelayError::Delivery {
                            id: event.id,
                            topic: event.topic,
                            source,
                        };
                        return Ok((sent, rows.len(), Some(failure)));
                    }
                    store::mark_published(conn, &row.id, now())?;
                    sent += 1;
                }
                Ok::<_, DbError>((sent, rows.len(), None))
            })
            .await?;
        match failure {
            Some(failure) => Err(failure),
            None => Ok((sent, len)),
        }
    }
}

/// The domain event an outbox row holds; a row that does not parse is reported, not skipped.
fn event_of(row: &store::OutboxRow) -> Result<DomainEvent, RelayError> {
    let unreadable = |why: String| RelayError::Unreadable {
        id: row.id.clone(),
        why,
    };
    Ok(DomainEvent {
        id: row.id.parse().map_err(|e| unreadable(format!("id: {e}")))?,
        topic: row.topic.clone(),
        payload: serde_json::from_str(&row.payload)
            .map_err(|e| unreadable(format!("payload: {e}")))?,
        occurred_at: row.created_at.and_utc(),
    })
}
