//! The outbox and the inbox of any module, on either backend.
//!
//! A module that publishes domain events records each one in its outbox table inside the
//! transaction that made it true ([`Outbox::record`]); the relay ([`OutboxRelay`]) moves rows to
//! an [`EventPublisher`] and marks a row published only after delivery succeeded, so a crash or
//! an unreachable consumer delays events, never loses them. A module that consumes them records
//! each handled event id in its inbox table in the handler's transaction ([`Inbox::first_time`]),
//! so a redelivery is a no-op.
//!
//! The tables are the module's own (created by its migrations, named `<module>_outbox` and
//! `<module>_inbox`, with the columns below); these statements are written once for all of them.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::{
    QueryableByName, RunQueryDsl,
    sql_types::{Nullable, Text, Timestamp},
};
use tokio::sync::Notify;

use super::db::{Db, DbConnection, DbError};
use modkit::events::{DeliveryError, DomainEvent, EventPublisher};

/// The `outbox` section of the configuration: how each process relays its modules' outboxes.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OutboxSettings {
    /// Whether this process relays; off only for instances that must not publish.
    pub relay_enabled: bool,
    /// How often a relay looks for rows it was not woken for (after a crash or a failure).
    pub poll_interval_ms: u64,
}

const BATCH: i64 = 100;

/// A module's outbox: its table (`id TEXT PRIMARY KEY, topic TEXT, payload TEXT, created_at
/// TIMESTAMP, published_at TIMESTAMP NULL, attempts INTEGER`) and the signal that wakes its
/// relay.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    table: &'static str,
    wakeup: Arc<Notify>,
}

#[derive(QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
}

impl Outbox {
    /// The outbox in `table` of `db`. `table` is a constant of the module, never input.
    pub fn new(db: Db, table: &'static str) -> Self {
        Self {
            db,
            table,
            wakeup: Arc::new(Notify::new()),
        }
    }

    /// Records `event` in the caller's transaction; call [`Outbox::wake`] once it committed.
    pub fn record(&self, conn: &mut DbConnection, event: &DomainEvent) -> diesel::QueryResult<()> {
        let (id, topic, payload, at) = (
            event.id.to_string(),
            event.topic.clone(),
            event.payload.to_string(),
            event.occurred_at.naive_utc(),
        );
        let sql = |p: [&str; 4]| {
            format!(
                "INSERT INTO {} (id, topic, payload, created_at, attempts) VALUES ({}, {}, {}, {}, 0)",
                self.table, p[0], p[1], p[2], p[3]
            )
        };
        macro_rules! insert {
            ($conn:expr, $p:expr) => {
                diesel::sql_query(sql($p))
                    .bind::<Text, _>(id)
                    .bind::<Text, _>(topic)
                    .bind::<Text, _>(payload)
                    .bind::<Timestamp, _>(at)
                    .execute($conn)
            };
        }
        match conn {
            DbConnection::Postgres(pg) => insert!(pg, ["$1", "$2", "$3", "$4"]),
            DbConnection::Sqlite(lite) => insert!(lite, ["?1", "?2", "?3", "?4"]),
        }
        .map(drop)
    }

    /// Wakes the relay: a recorded event committed.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    /// The relay of this outbox to `publisher`, woken by [`Outbox::wake`] and otherwise polling
    /// every `poll_interval`.
    pub fn relay(
        &self,
        publisher: Arc<dyn EventPublisher>,
        poll_interval: Duration,
    ) -> OutboxRelay {
        OutboxRelay {
            outbox: self.clone(),
            publisher,
            poll_interval,
        }
    }

    /// The oldest unpublished events, in the order they happened; on PostgreSQL locked until
    /// the transaction ends, skipping rows another relay holds (so several instances never
    /// publish the same row at once).
    fn pending(&self, conn: &mut DbConnection, claim: bool) -> diesel::QueryResult<Vec<OutboxRow>> {
        let select = format!(
            "SELECT id, topic, payload, created_at FROM {} WHERE published_at IS NULL \
             ORDER BY created_at, id LIMIT {BATCH}",
            self.table
        );
        match conn {
            DbConnection::Postgres(pg) if claim => {
                diesel::sql_query(format!("{select} FOR UPDATE SKIP LOCKED")).load(pg)
            }
            DbConnection::Postgres(pg) => diesel::sql_query(select).load(pg),
            DbConnection::Sqlite(lite) => diesel::sql_query(select).load(lite),
        }
    }

    /// Marks row `id` published at `now`, or counts a failed attempt when `now` is `None`.
    fn settle(
        &self,
        conn: &mut DbConnection,
        id: &str,
        now: Option<DateTime<Utc>>,
    ) -> diesel::QueryResult<()> {
        let set = match now {
            Some(_) => "published_at = {at}",
            None => "attempts = attempts + 1",
        };
        let at = now.map(|t| t.naive_utc());
        let sql = |id: &str, at: &str| {
            format!(
                "UPDATE {} SET {} WHERE id = {id}",
                self.table,
                set.replace("{at}", at)
            )
        };
        macro_rules! update {
            ($conn:expr, $id:expr, $at:expr) => {
                match at {
                    Some(at) => diesel::sql_query(sql($id, $at))
                        .bind::<Text, _>(id)
                        .bind::<Nullable<Timestamp>, _>(Some(at))
                        .execute($conn),
                    None => diesel::sql_query(sql($id, $at))
                        .bind::<Text, _>(id)
                        .execute($conn),
                }
            };
        }
        match conn {
            DbConnection::Postgres(pg) => update!(pg, "$1", "$2"),
            DbConnection::Sqlite(lite) => update!(lite, "?1", "?2"),
        }
        .map(drop)
    }
}

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

/// Publishes one outbox's rows, in order, at least once.
pub struct OutboxRelay {
    outbox: Outbox,
    publisher: Arc<dyn EventPublisher>,
    poll_interval: Duration,
}

impl OutboxRelay {
    /// Runs until the process ends: drains at start (rows left by a crash), whenever woken,
    /// and every poll interval (rows whose delivery failed earlier).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.drain().await {
                    Ok(0) => {}
                    Ok(sent) => tracing::debug!(sent, table = self.outbox.table, "outbox relayed"),
                    Err(err) => {
                        tracing::warn!(error = %err, table = self.outbox.table, "outbox relay stalled; will retry")
                    }
                }
                tokio::select! {
                    _ = self.outbox.wakeup.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        })
    }

    /// Publishes pending rows in order; stops at the first failure so order is kept.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut sent = 0;
        loop {
            let (batch_sent, batch_len) = if self.outbox.db.backend() == "postgres" {
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
        let outbox = self.outbox.clone();
        let rows = self
            .outbox
            .db
            .run(move |conn| outbox.pending(conn, false).map_err(DbError::from))
            .await?;
        let len = rows.len();
        let mut sent = 0;
        for row in rows {
            let event = event_of(&row)?;
            let delivered = self.publisher.publish(&event).await;
            let at = delivered.is_ok().then(crate::platform::now);
            let outbox = self.outbox.clone();
            self.outbox
                .db
                .run(move |conn| outbox.settle(conn, &row.id, at).map_err(DbError::from))
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
        let outbox = self.outbox.clone();
        let runtime = tokio::runtime::Handle::current();
        let (sent, len, failure) = self
            .outbox
            .db
            .write(move |conn| {
                let rows = outbox.pending(conn, true)?;
                let mut sent = 0;
                for row in &rows {
                    let event = match event_of(row) {
                        Ok(event) => event,
                        Err(failure) => return Ok((sent, rows.len(), Some(failure))),
                    };
                    // On the blocking pool, so waiting for the publish here blocks no worker.
                    if let Err(source) = runtime.block_on(publisher.publish(&event)) {
                        outbox.settle(conn, &row.id, None)?;
                        let failure = RelayError::Delivery {
                            id: event.id,
                            topic: event.topic,
                            source,
                        };
                        return Ok((sent, rows.len(), Some(failure)));
                    }
                    outbox.settle(conn, &row.id, Some(crate::platform::now()))?;
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
fn event_of(row: &OutboxRow) -> Result<DomainEvent, RelayError> {
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

/// A module's inbox: the ids of the domain events it handled (`message_id TEXT PRIMARY KEY,
/// topic TEXT, handled_at TIMESTAMP`).
#[derive(Debug, Clone, Copy)]
pub struct Inbox(pub &'static str);

impl Inbox {
    /// Records the domain event `message_id` (of `topic`) as handled in the caller's
    /// transaction; `false` when it had been handled before (the handler then does nothing).
    pub fn first_time(
        self,
        conn: &mut DbConnection,
        message_id: uuid::Uuid,
        topic: &str,
        now: DateTime<Utc>,
    ) -> diesel::QueryResult<bool> {
        let sql = |p: [&str; 3]| {
            format!(
                "INSERT INTO {} (message_id, topic, handled_at) VALUES ({}, {}, {}) \
                 ON CONFLICT (message_id) DO NOTHING",
                self.0, p[0], p[1], p[2]
            )
        };
        let (id, topic, at) = (message_id.to_string(), topic.to_owned(), now.naive_utc());
        macro_rules! insert {
            ($conn:expr, $p:expr) => {
                diesel::sql_query(sql($p))
                    .bind::<Text, _>(id)
                    .bind::<Text, _>(topic)
                    .bind::<Timestamp, _>(at)
                    .execute($conn)
            };
        }
        let inserted = match conn {
            DbConnection::Postgres(pg) => insert!(pg, ["$1", "$2", "$3"]),
            DbConnection::Sqlite(lite) => insert!(lite, ["?1", "?2", "?3"]),
        }?;
        Ok(inserted == 1)
    }
}
