//! The events module's diesel queries. Only this module's tables are named here.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};

use super::{
    EventFilter, EventsError, RegistrationStatus, When,
    domain::{Event, EventDraft, EventId, Registration, filter_key},
    schema::{
        calendar_feeds, event_words, events, events_account_guards, events_deleted_users,
        registrations,
    },
    search,
};
use crate::platform::{
    auth::DeletedAccounts,
    db::{AccountLock, DbConnection, write_transaction},
    ids::UserId,
    now,
    pagination::{Cursor, PageRequest},
    zone::Zone,
};

/// An `events` row, as stored; only this file sees one.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = events, treat_none_as_null = true)]
struct EventRow {
    id: String,
    organizer_id: String,
    title: String,
    description: Option<String>,
    location: Option<String>,
    location_key: Option<String>,
    category: Option<String>,
    category_key: Option<String>,
    time_zone: String,
    starts_at: NaiveDateTime,
    ends_at: NaiveDateTime,
    capacity: i32,
    seats_taken: i32,
    waitlist_length: i32,
    status: String,
    sequence: i32,
    /// Written with the event and by [`save_text`], never by a plain save: a sign-up does not
    /// rewrite it.
    #[diesel(skip_update)]
    search_text: Option<String>,
    /// Whether the words are in `event_words` (see [`index_text`]); written with `search_text`.
    #[diesel(skip_update)]
    words_listed: Option<i32>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

const SCHEDULED: &str = "scheduled";
const CANCELLED: &str = "cancelled";

/// Reads an id column back; a value that is no UUID is a corrupt row, reported.
fn parse_id<T: std::str::FromStr>(
    table: &'static str,
    key: &str,
    value: &str,
) -> Result<T, EventsError> {
    value.parse().map_err(|_| EventsError::CorruptRow {
        table,
        key: key.to_owned(),
        why: format!("{value:?} is not a UUID"),
    })
}

impl EventRow {
    fn from_event(event: &Event) -> Self {
        let draft = &event.draft;
        Self {
            id: event.id.to_string(),
            organizer_id: event.organizer.to_string(),
            title: draft.title.clone(),
            description: draft.description.clone(),
            location: draft.location.clone(),
            location_key: draft.location.as_deref().map(filter_key),
            category: draft.category.clone(),
            category_key: draft.category.as_deref().map(filter_key),
            time_zone: draft.time_zone.name().to_owned(),
            starts_at: draft.starts_at.naive_utc(),
            ends_at: draft.ends_at.naive_utc(),
            capacity: draft.capacity,
            seats_taken: event.seats_taken(),
            waitlist_length: event.waitlist_length(),
            status: if event.is_cancelled() {
                CANCELLED
            } else {
                SCHEDULED
            }
            .to_owned(),
            sequence: event.sequence(),
            search_text: None,
            words_listed: None,
            created_at: event.created_at.naive_utc(),
            updated_at: event.updated_at.naive_utc(),
        }
    }

    fn into_event(self) -> Result<Event, EventsError> {
        let cancelled = match self.status.as_str() {
            SCHEDULED => false,
            CANCELLED => true,
            other => {
                return Err(EventsError::CorruptRow {
                    table: "events",
                    key: self.id,
                    why: format!("unknown status {other:?}"),
                });
            }
        };
        Ok(Event::restore(
            parse_id("events", &self.id, &self.id)?,
            parse_id("events", &self.id, &self.organizer_id)?,
            EventDraft {
                title: self.title,
                description: self.description,
                location: self.location,
                category: self.category,
                // A name this build's database lacks (written by a later one) reads as UTC
                // rather than making the event unreadable.
                time_zone: Zone::or_utc(&self.time_zone),
                starts_at: self.starts_at.and_utc(),
                ends_at: self.ends_at.and_utc(),
                capacity: self.capacity,
            },
            self.seats_taken,
            self.waitlist_length,
            cancelled,
            self.sequence,
            self.created_at.and_utc(),
            self.updated_at.and_utc(),
        ))
    }
}

/// Rows to events, failing on the first corrupt one.
fn into_events(rows: Vec<EventRow>) -> Result<Vec<Event>, EventsError> {
    rows.into_iter().map(EventRow::into_event).collect()
}

/// A `registrations` row, as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = registrations)]
struct RegistrationRow {
    event_id: String,
    user_id: String,
    status: String,
    created_at: NaiveDateTime,
}

impl RegistrationRow {
    fn from_registration(registration: &Registration) -> Self {
        Self {
            event_id: registration.event.to_string(),
            user_id: registration.user.to_string(),
            status: registration.status.as_str().to_owned(),
            created_at: registration.created_at.naive_utc(),
        }
    }

    fn into_registration(self) -> Result<Registration, EventsError> {
        let key = format!("{}/{}", self.event_id, self.user_id);
        Ok(Registration {
            event: parse_id("registrations", &key, &self.event_id)?,
            user: parse_id("registrations", &key, &self.user_id)?,
            status: self.status.parse().map_err(|why| EventsError::CorruptRow {
                table: "registrations",
                key,
                why,
            })?,
            created_at: self.created_at.and_utc(),
        })
    }
}

fn into_registrations(rows: Vec<RegistrationRow>) -> Result<Vec<Registration>, EventsError> {
    rows.into_iter()
        .map(RegistrationRow::into_registration)
        .collect()
}

/// Position in an event's list: registration time, ties broken by user id.
pub fn cursor_by_user(registration: &Registration) -> Cursor {
    Cursor {
        at: registration.created_at,
        id: registration.user.as_uuid(),
    }
}

/// Position in a user's list: registration time, ties broken by event id.
pub fn cursor_by_event(registration: &Registration) -> Cursor {
    Cursor {
        at: registration.created_at,
        id: registration.event.as_uuid(),
    }
}

/// Position in the event list: start time, ties broken by id.
pub fn cursor_by_start(event: &Event) -> Cursor {
    Cursor {
        at: event.draft.starts_at,
        id: event.id.as_uuid(),
    }
}

pub fn insert_event(conn: &mut DbConnection, event: &Event) -> Result<(), EventsError> {
    let text = search::indexed_text(&event.draft);
    let row = EventRow {
        search_text: Some(text.clone()),
        words_listed: Some(1),
        ..EventRow::from_event(event)
    };
    diesel::insert_into(events::table)
        .values(&row)
        .execute(conn)?;
    index_text(conn, event.id, None, (&text, row.starts_at))
}

/// An event's indexed text and start: what its rows in the search indexes stand for.
type Indexed<'a> = (&'a str, NaiveDateTime);

/// Keeps the search indexes in step with an event whose text or start is new or changed: its
/// rows in `event_words` (the words' lists in start order, on both backends; those of
/// `previous`, what was listed before, go) and SQLite's full-text row. PostgreSQL's full-text
/// index follows the `search_text` column by itself. The caller marks the words listed
/// (`words_listed`, [`raise_listed`]) in the statement that writes the text: a change of the
/// text or start by anything else (an older version) unlists the event, and
/// [`index_unindexed`] lists it again. Rows left behind by such a change (at a start the event
/// left, or of words it lost) are never answered: a search checks each event it reads from the
/// lists against its stored start and text.
fn index_text(
    conn: &mut DbConnection,
    id: EventId,
    previous: Option<Indexed>,
    (text, starts_at): Indexed,
) -> Result<(), EventsError> {
    let event_id = id.to_string();
    if let Some((text, starts_at)) = previous {
        diesel::delete(
            event_words::table
                .filter(event_words::word.eq_any(distinct_words(text)))
                .filter(event_words::starts_at.eq(starts_at))
                .filter(event_words::event_id.eq(&event_id)),
        )
        .execute(conn)?;
    }
    // A few hundred rows a statement, well within either database's limit on parameters.
    for words in distinct_words(text).chunks(300) {
        let rows: Vec<_> = words
            .iter()
            .map(|word| {
                (
                    event_words::word.eq(*word),
                    event_words::starts_at.eq(starts_at),
                    event_words::event_id.eq(&event_id),
                )
            })
            .collect();
        // Several rows at once is each backend's own statement. A row already there (the
        // event was unlisted by an older version and moved back) is the row wanted.
        let insert = diesel::insert_into(event_words::table)
            .values(&rows)
            .on_conflict_do_nothing();
        match conn {
            DbConnection::Sqlite(c) => insert.execute(c)?,
            DbConnection::Postgres(c) => insert.execute(c)?,
        };
    }
    let DbConnection::Sqlite(lite) = conn else {
        return Ok(());
    };
    // Also when nothing was indexed as far as the caller knows: an event of an older version
    // may have a row from before.
    let rowid = search::fts_rowid(id.as_uuid());
    diesel::sql_query("DELETE FROM events_search WHERE rowid = ?1")
        .bind::<BigInt, _>(rowid)
        .execute(lite)?;
    diesel::sql_query(
        "INSERT INTO events_search (rowid, event_id, search_text) VALUES (?1, ?2, ?3)",
    )
    .bind::<BigInt, _>(rowid)
    .bind::<Text, _>(event_id)
    .bind::<Text, _>(text)
    .execute(lite)?;
    Ok(())
}

/// The words of indexed text, each once.
fn distinct_words(text: &str) -> Vec<&str> {
    let mut words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// `words_listed` raised: a value the statement changes, so the database does not unlist the
/// event (see the migration `event_words`).
fn raise_listed()
-> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Integer>> {
    diesel::dsl::sql("COALESCE(words_listed, 0) + 1")
}

/// Re-indexes an event whose search text or start changed (after [`save_event`]):
/// `previous_start` is where its words were listed, `now` its new text and start.
pub fn save_text(
    conn: &mut DbConnection,
    id: EventId,
    previous_start: DateTime<Utc>,
    (text, starts_at): (&str, DateTime<Utc>),
) -> Result<(), EventsError> {
    // The text stored is the one its words were listed from (the reduction rules of the build
    // that wrote it may differ from this one's).
    let stored: Option<String> = events::table
        .find(id.to_string())
        .select(events::search_text)
        .first(conn)
        .optional()?
        .flatten();
    diesel::update(events::table.find(id.to_string()))
        .set((
            events::search_text.eq(text),
            events::words_listed.eq(raise_listed()),
        ))
        .execute(conn)?;
    index_text(
        conn,
        id,
        stored
            .as_deref()
            .map(|stored| (stored, previous_start.naive_utc())),
        (text, starts_at.naive_utc()),
    )
}

/// Indexes up to `limit` events not indexed yet or whose words are not listed (stored before
/// search existed, or changed by an older version), in id order; how many it looked at (fewer
/// than `limit`: none is left). An event another instance indexed, or an older version changed,
/// meanwhile is left as it is (to the next round, if unlisted again).
pub fn index_unindexed(conn: &mut DbConnection, limit: i64) -> Result<usize, EventsError> {
    type Texts = (
        String,
        NaiveDateTime,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Texts> = events::table
        .filter(events::words_listed.is_null())
        .order(events::id.asc())
        .select((
            events::id,
            events::starts_at,
            events::search_text,
            events::title,
            events::description,
            events::location,
            events::category,
        ))
        .limit(limit)
        .load(conn)?;
    for (id, starts_at, stored, title, description, location, category) in &rows {
        let text = search::text_of([
            Some(title),
            description.as_ref(),
            location.as_ref(),
            category.as_ref(),
        ]);
        // Claimed only as read: an older version's change meanwhile is the next round's.
        let unchanged = events::table
            .find(id)
            .filter(events::words_listed.is_null())
            .filter(events::starts_at.eq(starts_at));
        let listed = (
            events::search_text.eq(&text),
            events::words_listed.eq(raise_listed()),
        );
        let claimed = match stored {
            Some(stored) => diesel::update(unchanged.filter(events::search_text.eq(stored)))
                .set(listed)
                .execute(conn)?,
            None => diesel::update(unchanged.filter(events::search_text.is_null()))
                .set(listed)
                .execute(conn)?,
        };
        if claimed == 1 {
            // The stored text's rows at this start go (indexed by an earlier rule, say); rows
            // at a start an older version moved the event from stay, never answered.
            let previous = stored.as_deref().map(|stored| (stored, *starts_at));
            index_text(
                conn,
                parse_id("events", id, id)?,
                previous,
                (&text, *starts_at),
            )?;
        }
    }
    Ok(rows.len())
}

pub fn find_event(conn: &mut DbConnection, id: EventId) -> Result<Option<Event>, EventsError> {
    events::table
        .find(id.to_string())
        .select(EventRow::as_select())
        .first(conn)
        .optional()?
        .map(EventRow::into_event)
        .transpose()
}

/// Takes the event's row lock (PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises
/// writers) and reads it, in one statement. Every change to an event's seats goes through here
/// (or [`ADMIT_GROUP`]) first, so two transactions never decide on the same seat at once.
pub fn lock_event(conn: &mut DbConnection, id: EventId) -> Result<Option<Event>, EventsError> {
    let row = events::table.find(id.to_string());
    match conn {
        // The weaker row lock that does not block the registrations' foreign-key checks.
        DbConnection::Postgres(pg) => row
            .select(EventRow::as_select())
            .for_no_key_update()
            .first(pg)
            .optional()?,
        DbConnection::Sqlite(lite) => row.select(EventRow::as_select()).first(lite).optional()?,
    }
    .map(EventRow::into_event)
    .transpose()
}

/// The columns a sign-up or a withdrawal changes (a full save rewrites every column).
pub fn save_seats(conn: &mut DbConnection, event: &Event) -> Result<(), EventsError> {
    diesel::update(events::table.find(event.id.to_string()))
        .set((
            events::seats_taken.eq(event.seats_taken()),
            events::waitlist_length.eq(event.waitlist_length()),
            events::updated_at.eq(event.updated_at.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// One of the write path's PostgreSQL statements ([`ADMIT_GROUP`], [`WITHDRAW_AT_ONCE`]) with
/// its values, which diesel prepares once per connection and then only executes: a `sql_query`
/// is parsed and planned by the server on every call, which under a flash crowd was a good part
/// of the database's time. The values come first, bound once each, as the `input` row the
/// statement reads (the people of a group as one array, so the text is the same for a group of
/// any size); then the rest of its `WITH` list and its body. Each text has its own cache entry
/// (keyed by the text itself).
enum Prepared {
    AdmitGroup {
        event: String,
        at: NaiveDateTime,
        users: Vec<String>,
    },
    Withdraw {
        event: String,
        user: String,
        at: NaiveDateTime,
        topic: String,
    },
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Prepared {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Timestamp};
        out.push_sql("WITH input AS (SELECT ");
        match self {
            Self::AdmitGroup { event, at, users } => {
                out.push_bind_param::<Text, _>(event)?;
                out.push_sql("::text AS event_id, ");
                out.push_bind_param::<Timestamp, _>(at)?;
                out.push_sql("::timestamp AS at), people AS (SELECT user_id, arrival FROM unnest(");
                out.push_bind_param::<Array<Text>, _>(users)?;
                out.push_sql("::text[]) WITH ORDINALITY AS p (user_id, arrival)), ");
                out.push_sql(ADMIT_GROUP);
            }
            Self::Withdraw {
                event,
                user,
                at,
                topic,
            } => {
                out.push_bind_param::<Text, _>(event)?;
                out.push_sql("::text AS event_id, ");
                out.push_bind_param::<Text, _>(user)?;
                out.push_sql("::text AS user_id, ");
                out.push_bind_param::<Timestamp, _>(at)?;
                out.push_sql("::timestamp AS at, ");
                out.push_bind_param::<Text, _>(topic)?;
                out.push_sql("::text AS topic), ");
                out.push_sql(WITHDRAW_AT_ONCE);
            }
        }
        Ok(())
    }
}

// No static id: diesel then keys its statement cache by the SQL text, one entry per statement.
impl diesel::query_builder::QueryId for Prepared {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Prepared {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<diesel::PgConnection> for Prepared {}

/// Where a sign-up of a group was placed.
#[derive(QueryableByName)]
struct PlacedRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    position: i32,
}

/// The sign-ups of a group, in one PostgreSQL statement: each person's guard row locked (in the
/// order of their ids, so that two groups sharing people never wait on each other crosswise) and
/// found alive, those not registered yet numbered in arrival order (`k` of them), then one
/// `UPDATE` of the event's row that finds it open and gives the first of them the free seats
/// and the rest the end of the waitlist, and their registrations inserted. Every decision on
/// seats is the `UPDATE`'s own, made on the version of the row it locks and writes (under
/// concurrency PostgreSQL re-reads the latest version and re-evaluates the `SET` and `WHERE` on
/// it); a separate locking read in the same statement is not relied on, since the statement's
/// other parts may see another version of the row. A seat goes to someone only when one is free
/// and nobody waits, so the waitlisted are the last `min(k, new waitlist length)` of the group,
/// which is how each person's place is read back from the row as written. Arrival times follow
/// the group's order, one microsecond apart, never earlier than the event's last change, so
/// `created_at` follows the lock order even across instances whose clocks disagree. A
/// registration the snapshot missed fails the insert on the primary key, and the group with it.
///
/// Rows only for those admitted; [`why_not_admitted`] says why the others were not.
const ADMIT_GROUP: &str = "\
account AS (
    INSERT INTO events_account_guards (user_id) SELECT user_id FROM people ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id
    WHERE events_account_guards.deleted_at IS NULL
    RETURNING user_id
), eligible AS (
    SELECT people.user_id, (row_number() OVER (ORDER BY people.arrival))::int AS rank
    FROM people JOIN account USING (user_id)
    WHERE NOT EXISTS (SELECT 1 FROM registrations
        WHERE event_id = (SELECT event_id FROM input) AND user_id = people.user_id)
), n AS (
    SELECT count(*)::int AS k FROM eligible
), admitted AS (
    UPDATE events SET
        seats_taken = seats_taken + LEAST((SELECT k FROM n),
            CASE WHEN waitlist_length = 0 THEN GREATEST(capacity - seats_taken, 0) ELSE 0 END),
        waitlist_length = waitlist_length + (SELECT k FROM n) - LEAST((SELECT k FROM n),
            CASE WHEN waitlist_length = 0 THEN GREATEST(capacity - seats_taken, 0) ELSE 0 END),
        updated_at = GREATEST((SELECT at FROM input), updated_at + interval '1 microsecond')
            + ((SELECT k FROM n) - 1) * interval '1 microsecond'
    WHERE id = (SELECT event_id FROM input) AND status = 'scheduled'
      AND starts_at > (SELECT at FROM input) AND (SELECT k FROM n) > 0
    RETURNING waitlist_length, updated_at
), placed AS (
    SELECT eligible.user_id,
        CASE WHEN eligible.rank > n.k - LEAST(n.k, admitted.waitlist_length)
            THEN 'waitlisted' ELSE 'confirmed' END AS status,
        admitted.updated_at - (n.k - eligible.rank) * interval '1 microsecond' AS created_at,
        admitted.waitlist_length - (n.k - eligible.rank) AS position
    FROM eligible, n, admitted
), registered AS (
    INSERT INTO registrations (event_id, user_id, status, created_at)
    SELECT (SELECT event_id FROM input), user_id, status, created_at FROM placed
)
SELECT user_id, status, created_at, position FROM placed";

/// What a sign-up obtained: the registration and, when waitlisted, its place.
pub type Admitted = (Registration, Option<i64>);

/// The sign-ups of `users` (distinct, in arrival order) at `now`: for each, in that order, what
/// it obtained, or `None` when refused ([`why_not_admitted`] says why). One statement on
/// PostgreSQL ([`ADMIT_GROUP`]); on SQLite a write transaction of its own, which excludes every
/// other writer while it reads and writes. An `Err` refused nobody in particular and admitted
/// nobody (a registration made meanwhile elsewhere fails the whole group on PostgreSQL).
pub fn admit_group(
    conn: &mut DbConnection,
    event: EventId,
    users: &[UserId],
    now: DateTime<Utc>,
) -> Result<Vec<Option<Admitted>>, EventsError> {
    debug_assert!(
        users.iter().collect::<std::collections::HashSet<_>>().len() == users.len(),
        "a group of distinct people"
    );
    match conn {
        DbConnection::Postgres(pg) => admit_group_at_once(pg, event, users, now),
        DbConnection::Sqlite(_) => write_transaction(conn, |conn| {
            let mut placed = vec![None; users.len()];
            let Some(mut found) = lock_event(conn, event)? else {
                return Ok(placed);
            };
            let before = found.clone();
            for (slot, &user) in placed.iter_mut().zip(users) {
                if !guard_alive(conn, user)? {
                    continue;
                }
                let mut trial = found.clone();
                let at = trial.arrival(now);
                let Ok(admission) = trial.admit(at) else {
                    break; // closed for everyone
                };
                let registration = Registration {
                    event,
                    user,
                    status: admission.status(),
                    created_at: at,
                };
                // SQLite undoes only the failed statement: the transaction goes on.
                match insert_registration(conn, &registration) {
                    Ok(()) => {
                        found = trial;
                        *slot = Some((registration, admission.position()));
                    }
                    Err(e) if crate::platform::db::is_unique_violation(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if found != before {
                save_seats(conn, &found)?;
            }
            Ok(placed)
        }),
    }
}

fn admit_group_at_once(
    conn: &mut diesel::PgConnection,
    event: EventId,
    users: &[UserId],
    at: DateTime<Utc>,
) -> Result<Vec<Option<Admitted>>, EventsError> {
    let keys: Vec<String> = users.iter().map(UserId::to_string).collect();
    let statement = Prepared::AdmitGroup {
        event: event.to_string(),
        at: at.naive_utc(),
        users: keys.clone(),
    };
    let mut rows: std::collections::HashMap<String, PlacedRow> = statement
        .load::<PlacedRow>(conn)?
        .into_iter()
        .map(|row| (row.user_id.clone(), row))
        .collect();
    let corrupt = |user: UserId, why| EventsError::CorruptRow {
        table: "registrations",
        key: format!("{event}/{user}"),
        why,
    };
    users
        .iter()
        .zip(keys)
        .map(|(&user, key)| {
            let Some(row) = rows.remove(&key) else {
                return Ok(None);
            };
            let status: RegistrationStatus =
                row.status.parse().map_err(|why| corrupt(user, why))?;
            let position =
                (status == RegistrationStatus::Waitlisted).then_some(i64::from(row.position));
            let registration = Registration {
                event,
                user,
                status,
                created_at: row.created_at.and_utc(),
            };
            Ok(Some((registration, position)))
        })
        .collect()
}

/// A withdrawal in one PostgreSQL statement: the registration deleted, the longest-waiting
/// person promoted into a freed seat with the domain event that tells them (`$4`: its topic)
/// recorded in the outbox, and the event's counts saved.
///
/// It is planned on the statement's snapshot (the registration, the event, whom to promote) and
/// acted on only if the event's row is still the version the snapshot saw: the `UPDATE` of the
/// event comes first and matches `xmin`, which PostgreSQL re-checks on the latest version when
/// another transaction changed the row meanwhile. Every change to an event's registrations
/// rewrites its row in the same transaction, so an unchanged row means unchanged registrations,
/// and the other changes follow from that `UPDATE` (they join its result). When the row changed,
/// nothing is done ([`Withdrawal::Stale`]) and the caller withdraws in a transaction that locks
/// first.
const WITHDRAW_AT_ONCE: &str = "\
event AS (
    SELECT id, xmin AS version, capacity, seats_taken, waitlist_length,
        title, starts_at, ends_at, location, time_zone
    FROM events WHERE id = (SELECT event_id FROM input)
), mine AS (
    SELECT status FROM registrations WHERE event_id = (SELECT event_id FROM input) AND user_id = (SELECT user_id FROM input)
), plan AS (
    SELECT event.*,
        event.seats_taken - CASE WHEN mine.status = 'confirmed' THEN 1 ELSE 0 END AS seats,
        event.waitlist_length - CASE WHEN mine.status = 'waitlisted' THEN 1 ELSE 0 END
            AS waiting
    FROM event, mine
), next AS (
    -- Nobody when there is no plan (a NULL limit would be no limit).
    SELECT waiting.user_id FROM registrations waiting
    WHERE waiting.event_id = (SELECT event_id FROM input) AND waiting.status = 'waitlisted' AND waiting.user_id <> (SELECT user_id FROM input)
    ORDER BY waiting.created_at, waiting.user_id
    LIMIT COALESCE((SELECT GREATEST(0, LEAST(capacity - seats, waiting)) FROM plan), 0)
), saved AS (
    UPDATE events SET
        seats_taken = plan.seats + (SELECT count(*) FROM next),
        waitlist_length = plan.waiting - (SELECT count(*) FROM next),
        updated_at = GREATEST((SELECT at FROM input), events.updated_at + interval '1 microsecond')
    FROM plan WHERE events.id = plan.id AND events.xmin = plan.version
    RETURNING events.id
), released AS (
    DELETE FROM registrations USING saved
    WHERE registrations.event_id = saved.id AND registrations.user_id = (SELECT user_id FROM input)
), promoted AS (
    UPDATE registrations SET status = 'confirmed' FROM saved, next
    WHERE registrations.event_id = saved.id AND registrations.user_id = next.user_id
    RETURNING registrations.user_id
), told AS (
    INSERT INTO events_outbox (id, topic, payload, created_at, attempts)
    SELECT gen_random_uuid()::text, (SELECT topic FROM input), json_build_object(
        'event', json_build_object(
            'id', plan.id, 'title', plan.title,
            'starts_at', to_char(plan.starts_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
            'ends_at', to_char(plan.ends_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
            'location', plan.location, 'time_zone', plan.time_zone),
        'user_id', promoted.user_id)::text, (SELECT at FROM input), 0
    FROM plan, promoted
)
SELECT EXISTS (SELECT 1 FROM event) AS found, EXISTS (SELECT 1 FROM mine) AS registered,
    EXISTS (SELECT 1 FROM saved) AS fresh, ARRAY(SELECT user_id FROM promoted) AS promoted";

#[derive(QueryableByName)]
struct WithdrawnRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    registered: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    fresh: bool,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    promoted: Vec<String>,
}

/// What [`withdraw_at_once`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// Withdrawn; these people got the freed seat (and a domain event each, `topic`).
    Done {
        promoted: Vec<UserId>,
    },
    NoSuchEvent,
    NotRegistered,
    /// Nothing done: the event changed while the statement waited for its lock.
    Stale,
}

/// See [`WITHDRAW_AT_ONCE`]. `topic` is the promotions' domain event.
pub fn withdraw_at_once(
    conn: &mut diesel::PgConnection,
    event: EventId,
    user: UserId,
    at: DateTime<Utc>,
    topic: &str,
) -> Result<Withdrawal, EventsError> {
    let statement = Prepared::Withdraw {
        event: event.to_string(),
        user: user.to_string(),
        at: at.naive_utc(),
        topic: topic.to_owned(),
    };
    let row: WithdrawnRow = statement.get_result(conn)?;
    Ok(match row {
        WithdrawnRow { found: false, .. } => Withdrawal::NoSuchEvent,
        WithdrawnRow {
            registered: false, ..
        } => Withdrawal::NotRegistered,
        WithdrawnRow { fresh: false, .. } => Withdrawal::Stale,
        WithdrawnRow { promoted, .. } => Withdrawal::Done {
            promoted: promoted
                .iter()
                .map(|id| parse_id("registrations", id, id))
                .collect::<Result<_, _>>()?,
        },
    })
}

/// Why [`admit_group`] refused someone, read afresh; `None` when nothing refuses now (what refused
/// changed since: the caller tries again).
pub fn why_not_admitted(
    conn: &mut DbConnection,
    event: EventId,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<Option<EventsError>, EventsError> {
    let gone = events_account_guards::table
        .find(user.to_string())
        .select(events_account_guards::deleted_at)
        .first::<Option<NaiveDateTime>>(conn)
        .optional()?
        .flatten()
        .is_some();
    if gone {
        return Ok(Some(EventsError::AccountGone));
    }
    let Some(found) = find_event(conn, event)? else {
        return Ok(Some(EventsError::EventNotFound));
    };
    if let Err(refusal) = found.ensure_open(at) {
        return Ok(Some(refusal.into()));
    }
    if find_registration(conn, event, user)?.is_some() {
        return Ok(Some(EventsError::AlreadyRegistered));
    }
    Ok(None)
}

pub fn save_event(conn: &mut DbConnection, event: &Event) -> Result<(), EventsError> {
    let row = EventRow::from_event(event);
    diesel::update(events::table.find(&row.id))
        .set(&row)
        .execute(conn)?;
    Ok(())
}

/// Up to how many matches the full-text index lists by id (see [`SearchPlan::FullText`]). Past
/// it the matches are common enough (one event in 200 of a million, or more) that walking the
/// list in order, each event checked against the index, finds a page of them soon.
pub const LIST_BY_ID_UP_TO: i64 = 5_000;

/// What PostgreSQL's search index covers (`migrations/events/postgres/*_event_search`).
const PG_SEARCH_VECTOR: &str = "array_to_tsvector(string_to_array(events.search_text, ' '))";

#[derive(QueryableByName)]
struct MatchedId {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The ids of the events (any status, any time) whose text matches every word of `words`, when
/// there are at most `up_to` of them; `None` when there are more.
pub fn matching_ids(
    conn: &mut DbConnection,
    words: &[String],
    up_to: i64,
) -> Result<Option<Vec<String>>, EventsError> {
    let found: Vec<MatchedId> = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT event_id AS id FROM events_search WHERE events_search MATCH ?1 LIMIT ?2",
        )
        .bind::<Text, _>(search::fts5_query(words))
        .bind::<BigInt, _>(up_to + 1)
        .load(c)?,
        DbConnection::Postgres(c) => diesel::sql_query(format!(
            "SELECT id FROM events WHERE {PG_SEARCH_VECTOR} @@ CAST($1 AS tsquery) LIMIT $2"
        ))
        .bind::<Text, _>(search::tsquery(words))
        .bind::<BigInt, _>(up_to + 1)
        .load(c)?,
    };
    Ok((found.len() as i64 <= up_to).then(|| found.into_iter().map(|m| m.id).collect()))
}

/// How many events a search reads in list order (or from its words' lists), looking for a page
/// of matches, before it takes the next plan (see [`list_events`]).
pub const SEARCH_WALK_ROWS: i64 = 4_096;

type Backend = <DbConnection as Connection>::Backend;

/// The start times a list reads from `after` on, and which way.
struct StartRange {
    /// One bound on each side where the scan starts, the tightest of the filter's, the
    /// cursor's and now's: the bound an index range starts at. Given several, SQLite would start
    /// at one and filter its way to the others. Both inclusive.
    lower: Option<NaiveDateTime>,
    upper: Option<NaiveDateTime>,
    /// Past lists: events that started, newest first.
    past: bool,
    now: NaiveDateTime,
    after: Option<Cursor>,
}

impl StartRange {
    fn of(filter: &EventFilter, after: Option<Cursor>) -> Self {
        let past = filter.when == When::Past;
        let after_at = after.map(|after| after.at);
        let tightest = |bounds: [Option<DateTime<Utc>>; 3], later: bool| {
            bounds
                .into_iter()
                .flatten()
                .reduce(|a, b| if later { a.max(b) } else { a.min(b) })
                .map(|at| at.naive_utc())
        };
        let now = now();
        let (lower, upper) = if past {
            (
                filter.from.map(|at| at.naive_utc()),
                tightest([filter.to, after_at, None], false),
            )
        } else {
            let started = (filter.when == When::Upcoming).then_some(now);
            (
                tightest([filter.from, after_at, started], true),
                filter.to.map(|at| at.naive_utc()),
            )
        };
        Self {
            lower,
            upper,
            past,
            now: now.naive_utc(),
            after,
        }
    }
}

/// Orders `$query` by `$start` and `$id` as a list runs and keeps the rows of `$range` (a
/// [`StartRange`]): the same keyset on `events` and on `event_words`.
macro_rules! in_list_order {
    ($query:expr, $start:expr, $id:expr, $range:expr) => {{
        let (mut query, range) = ($query, $range);
        query = if range.past {
            query.order(($start.desc(), $id.desc()))
        } else {
            query.order(($start.asc(), $id.asc()))
        };
        if let Some(lower) = range.lower {
            query = query.filter($start.ge(lower));
        }
        if let Some(upper) = range.upper {
            query = query.filter($start.le(upper));
        }
        if range.past {
            query = query.filter($start.lt(range.now));
        }
        if let Some(after) = range.after {
            // Past the bound, this only sorts out the rows sharing the cursor's start time.
            let (at, id) = (after.at.naive_utc(), after.id.to_string());
            query = if range.past {
                query.filter($start.lt(at).or($id.lt(id)))
            } else {
                query.filter($start.gt(at).or($id.gt(id)))
            };
        }
        query
    }};
}

/// The events of a list in its order, from `after` on: every filter but the words.
fn list_query(filter: &EventFilter, after: Option<Cursor>) -> events::BoxedQuery<'static, Backend> {
    let status = if filter.cancelled {
        CANCELLED
    } else {
        SCHEDULED
    };
    let mut query = events::table.filter(events::status.eq(status)).into_boxed();
    if let Some(organizer) = filter.organizer_id {
        query = query.filter(events::organizer_id.eq(organizer.to_string()));
    }
    if let Some(category) = &filter.category {
        query = query.filter(events::category_key.eq(filter_key(category)));
    }
    if let Some(location) = &filter.location {
        query = query.filter(events::location_key.eq(filter_key(location)));
    }
    in_list_order!(
        query,
        events::starts_at,
        events::id,
        StartRange::of(filter, after)
    )
}

/// The next `rows` events of `word`'s list in `range`: start and id.
fn word_list(
    conn: &mut DbConnection,
    word: &str,
    range: &StartRange,
    rows: i64,
) -> QueryResult<Vec<(NaiveDateTime, String)>> {
    let query = event_words::table
        .filter(event_words::word.eq(word.to_owned()))
        .select((event_words::starts_at, event_words::event_id))
        .into_boxed();
    in_list_order!(query, event_words::starts_at, event_words::event_id, range)
        .limit(rows)
        .load(conn)
}

/// A page of the events matching `filter` (and one more, to tell whether a next page exists).
///
/// A search (`q`) takes the plan its words call for, so that no kind of word costs a scan as
/// events grow (each [`SearchPlan`] is tried in turn): first the list is read in order, a few rows
/// at a time, keeping the events whose text has the words — common words fill a page within a
/// few hundred rows, at any size. When the first rows hold none of them, or [`SEARCH_WALK_ROWS`]
/// rows less than a page, the matches are sparse: the lists of their words, kept in start order
/// (`event_words`), give the next page reading little more than it. A query word beginning many
/// indexed words (`e`) has too many lists to merge; then the full-text index answers. The
/// statements of one search share a snapshot.
pub fn list_events(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
) -> Result<Vec<Event>, EventsError> {
    list_events_by(conn, filter, page, SearchPlan::Walk)
}

/// The ways a search finds its matches, in the order [`list_events`] tries them: each answers
/// the same pages (the tests force each and compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SearchPlan {
    /// Reading the list in order, each event's text checked.
    Walk,
    /// Merging the lists of the words a query word begins ([`from_word_lists`]).
    #[cfg_attr(not(test), expect(dead_code, reason = "only the tests start here"))]
    WordLists,
    /// Asking the full-text index: every match listed by id when they are a few thousand at
    /// most, otherwise the list read in order with each event checked against the index.
    FullText,
}

/// [`list_events`], a search starting at `plan` (the ones before it skipped).
pub(super) fn list_events_by(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
    plan: SearchPlan,
) -> Result<Vec<Event>, EventsError> {
    let Some(words) = &filter.q else {
        let query = list_query(filter, page.after).select(EventRow::as_select());
        return into_events(query.limit(page.limit + 1).load(conn)?);
    };
    // Several statements: one snapshot for all of them, so that an event moved or cancelled
    // meanwhile is seen once, where it is (a page short of one row would end the list).
    conn.transaction(|conn| {
        if let DbConnection::Postgres(c) = conn {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(c)?;
        }
        search_page(conn, filter, page, words, plan)
    })
}

fn search_page(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
    words: &[String],
    plan: SearchPlan,
) -> Result<Vec<Event>, EventsError> {
    let mut page_ids = None;
    if plan == SearchPlan::Walk {
        page_ids = walk_for_matches(conn, filter, page, words)?;
    }
    if page_ids.is_none()
        && plan != SearchPlan::FullText
        && let Some(rows) = from_word_lists(conn, filter, page, words)?
    {
        return into_events(rows);
    }
    let query = list_query(filter, page.after)
        .select(EventRow::as_select())
        .limit(page.limit + 1);
    let listed = match page_ids {
        Some(ids) => Some(ids),
        None => matching_ids(conn, words, LIST_BY_ID_UP_TO)?,
    };
    let query = match listed {
        Some(ids) if ids.is_empty() => return Ok(Vec::new()),
        Some(ids) => query.filter(events::id.eq_any(ids)),
        None => match conn {
            DbConnection::Sqlite(_) => query.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "EXISTS (SELECT 1 FROM events_search WHERE events_search MATCH ",
                )
                .bind::<Text, _>(search::fts5_query(words))
                .sql(" AND events_search.rowid = uuid_rowid(events.id))"),
            ),
            DbConnection::Postgres(_) => query.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(PG_SEARCH_VECTOR)
                    .sql(" @@ CAST(")
                    .bind::<Text, _>(search::tsquery(words))
                    .sql(" AS tsquery)"),
            ),
        },
    };
    into_events(query.load(conn)?)
}

/// How much text a search reads event by event at most (descriptions may be long).
const SEARCH_WALK_BYTES: usize = 2 << 20;

/// The matches a search found so far (ids, or whole rows), in list order: a page and one more
/// at most.
struct Matches<'w, T> {
    words: &'w [String],
    wanted: usize,
    kept: Vec<T>,
}

impl<'w, T> Matches<'w, T> {
    fn new(words: &'w [String], page: PageRequest) -> Self {
        let wanted = usize::try_from(page.limit + 1).unwrap_or(usize::MAX);
        Self {
            words,
            wanted,
            kept: Vec::with_capacity(wanted.min(1_024)),
        }
    }

    /// Keeps `event` when its indexed text has every word; whether the page is full.
    fn keep(&mut self, event: T, text: Option<&str>) -> bool {
        if text.is_some_and(|text| search::matches(text, self.words)) {
            self.kept.push(event);
        }
        self.kept.len() == self.wanted
    }
}

/// The cursor of a row read in list order.
fn cursor_of(at: NaiveDateTime, id: &str) -> Result<Cursor, EventsError> {
    let uuid = uuid::Uuid::parse_str(id).map_err(|e| EventsError::CorruptRow {
        table: "events",
        key: id.to_owned(),
        why: format!("its id is not a UUID: {e}"),
    })?;
    Ok(Cursor {
        at: at.and_utc(),
        id: uuid,
    })
}

/// The ids of `page` of the events matching `words`, found by reading the list in order and
/// each event's indexed text (plain text, no index), when a page of them comes within
/// [`SEARCH_WALK_ROWS`] rows (or [`SEARCH_WALK_BYTES`] of text) or the list ends first. `None`
/// when they are sparser: none in the first rows, or less than a page in all it read.
fn walk_for_matches(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
    words: &[String],
) -> Result<Option<Vec<String>>, EventsError> {
    let mut found = Matches::new(words, page);
    let (mut after, mut walked, mut text_read) = (page.after, 0, 0);
    // Small first (a common word fills a page at once), then doubling.
    let mut rows_asked = (page.limit + 1)
        .saturating_mul(4)
        .clamp(64, SEARCH_WALK_ROWS);
    loop {
        let rows: Vec<(String, NaiveDateTime, Option<String>)> = list_query(filter, after)
            .select((events::id, events::starts_at, events::search_text))
            .limit(rows_asked)
            .load(conn)?;
        walked += rows.len() as i64;
        let ended = (rows.len() as i64) < rows_asked;
        if let Some((id, at, _)) = rows.last() {
            after = Some(cursor_of(*at, id)?);
        }
        for (id, _, text) in rows {
            text_read += text.as_ref().map_or(0, String::len);
            if found.keep(id, text.as_deref()) {
                return Ok(Some(found.kept));
            }
        }
        if ended {
            return Ok(Some(found.kept));
        }
        if found.kept.is_empty() || walked >= SEARCH_WALK_ROWS || text_read >= SEARCH_WALK_BYTES {
            return Ok(None);
        }
        rows_asked = rows_asked.saturating_mul(2).min(SEARCH_WALK_ROWS - walked);
    }
}

/// Up to how many indexed words one query word may begin for [`from_word_lists`] to merge their
/// lists.
const WORD_LISTS_UP_TO: usize = 16;

/// `page` of the events matching `words` (whole rows), read from the words' lists in start order
/// (`event_words`): the lists of the indexed words that one query word begins — the query word
/// beginning the fewest — merged, and each event read checked against the list's other filters
/// and every word. A page costs about what it reads, however many events match. `None` when every
/// query word begins more than [`WORD_LISTS_UP_TO`] indexed words, or [`SEARCH_WALK_ROWS`]
/// events (or [`SEARCH_WALK_BYTES`] of their text) read held less than a page: the other words
/// or filters rule most of them out.
fn from_word_lists(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
    words: &[String],
) -> Result<Option<Vec<EventRow>>, EventsError> {
    let mut fewest: Option<Vec<String>> = None;
    for word in words {
        let indexed = words_beginning(conn, word, WORD_LISTS_UP_TO + 1)?;
        if indexed.is_empty() {
            return Ok(Some(Vec::new())); // no event has this word
        }
        if indexed.len() <= WORD_LISTS_UP_TO
            && fewest.as_ref().is_none_or(|f| indexed.len() < f.len())
        {
            fewest = Some(indexed);
        }
    }
    let Some(lists) = fewest else {
        return Ok(None);
    };
    let mut found = Matches::new(words, page);
    let mut range = StartRange::of(filter, page.after);
    let (mut rows, mut read, mut text_read) = (page.limit + 1, 0, 0);
    loop {
        // The next `rows` of the merged lists: the first `rows` of each, merged, cut to `rows`.
        let mut next = Vec::new();
        for word in &lists {
            next.extend(word_list(conn, word, &range, rows)?);
        }
        next.sort_unstable();
        if range.past {
            next.reverse();
        }
        next.dedup(); // an event with two of the words
        next.truncate(usize::try_from(rows).unwrap_or(usize::MAX));
        let ended = (next.len() as i64) < rows;
        read += next.len() as i64;
        if let Some((at, id)) = next.last() {
            range = StartRange::of(filter, Some(cursor_of(*at, id)?));
        }
        let ids: Vec<String> = next.iter().map(|(_, id)| id.clone()).collect();
        let listed: HashSet<(NaiveDateTime, String)> = next.into_iter().collect();
        // Whole rows: the page is answered from them, with no second read.
        let checked: Vec<EventRow> = list_query(filter, page.after)
            .filter(events::id.eq_any(ids))
            .select(EventRow::as_select())
            .load(conn)?;
        for mut event in checked {
            text_read += event.description.as_ref().map_or(0, String::len)
                + event.search_text.as_ref().map_or(0, String::len);
            // Read where the event is, not at a start an older version moved it from.
            if !listed.contains(&(event.starts_at, event.id.clone())) {
                continue;
            }
            let text = event.search_text.take();
            if found.keep(event, text.as_deref()) {
                return Ok(Some(found.kept));
            }
        }
        if ended {
            return Ok(Some(found.kept));
        }
        if read >= SEARCH_WALK_ROWS || text_read >= SEARCH_WALK_BYTES {
            return Ok(None);
        }
        rows = rows.saturating_mul(2).min(SEARCH_WALK_ROWS - read);
    }
}

#[derive(QueryableByName)]
struct IndexedWord {
    #[diesel(sql_type = Text)]
    word: String,
}

/// The first `up_to` indexed words beginning with `prefix`, in byte order: one index seek each,
/// however many events have them.
fn words_beginning(
    conn: &mut DbConnection,
    prefix: &str,
    up_to: usize,
) -> Result<Vec<String>, EventsError> {
    // Each step seeks the next word past the last one found.
    const NEXT_WORDS: &str = "WITH RECURSIVE found (word, n) AS ( \
        SELECT (SELECT word FROM event_words WHERE word >= $1 AND word < $2 ORDER BY word LIMIT 1), 1 \
        UNION ALL \
        SELECT (SELECT word FROM event_words WHERE word > found.word AND word < $2 \
                ORDER BY word LIMIT 1), n + 1 \
        FROM found WHERE found.word IS NOT NULL AND n < $3) \
        SELECT word FROM found WHERE word IS NOT NULL";
    // Every word beginning with `prefix` sorts before `prefix` followed by the last code point
    // (no word has that one: words are letters and digits).
    let end = format!("{prefix}\u{10FFFF}");
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
    let found: Vec<IndexedWord> = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(NEXT_WORDS.replace('$', "?"))
            .bind::<Text, _>(prefix)
            .bind::<Text, _>(&end)
            .bind::<BigInt, _>(up_to)
            .load(c)?,
        DbConnection::Postgres(c) => diesel::sql_query(NEXT_WORDS)
            .bind::<Text, _>(prefix)
            .bind::<Text, _>(&end)
            .bind::<BigInt, _>(up_to)
            .load(c)?,
    };
    Ok(found.into_iter().map(|w| w.word).collect())
}

pub fn find_events(conn: &mut DbConnection, ids: &[EventId]) -> Result<Vec<Event>, EventsError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    into_events(
        events::table
            .filter(events::id.eq_any(ids))
            .select(EventRow::as_select())
            .load(conn)?,
    )
}

/// Scheduled events starting at or after `from` and before `to`, each with the people who have
/// a seat at it.
pub fn seats_starting_between(
    conn: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(Event, Vec<UserId>)>, EventsError> {
    let found = into_events(
        events::table
            .filter(events::status.eq(SCHEDULED))
            .filter(events::starts_at.ge(from.naive_utc()))
            .filter(events::starts_at.lt(to.naive_utc()))
            .order((events::starts_at.asc(), events::id.asc()))
            .select(EventRow::as_select())
            .load(conn)?,
    )?;
    let ids: Vec<String> = found.iter().map(|e| e.id.to_string()).collect();
    let seats: Vec<(String, String)> = registrations::table
        .filter(registrations::event_id.eq_any(ids))
        .filter(registrations::status.eq(RegistrationStatus::Confirmed.as_str()))
        .select((registrations::event_id, registrations::user_id))
        .load(conn)?;
    found
        .into_iter()
        .map(|event| {
            let key = event.id.to_string();
            let users = seats
                .iter()
                .filter(|(e, _)| *e == key)
                .map(|(_, u)| parse_id("registrations", u, u))
                .collect::<Result<Vec<UserId>, _>>()?;
            Ok((event, users))
        })
        .collect()
}

/// Scheduled events the user organises.
pub fn scheduled_events_of(
    conn: &mut DbConnection,
    organizer: UserId,
) -> Result<Vec<EventId>, EventsError> {
    let ids: Vec<String> = events::table
        .filter(events::organizer_id.eq(organizer.to_string()))
        .filter(events::status.eq(SCHEDULED))
        .select(events::id)
        .load(conn)?;
    ids.iter().map(|id| parse_id("events", id, id)).collect()
}

pub fn find_registration(
    conn: &mut DbConnection,
    event: EventId,
    user: UserId,
) -> Result<Option<Registration>, EventsError> {
    registrations::table
        .find((event.to_string(), user.to_string()))
        .select(RegistrationRow::as_select())
        .first(conn)
        .optional()?
        .map(RegistrationRow::into_registration)
        .transpose()
}

pub fn insert_registration(
    conn: &mut DbConnection,
    registration: &Registration,
) -> QueryResult<()> {
    diesel::insert_into(registrations::table)
        .values(RegistrationRow::from_registration(registration))
        .execute(conn)
        .map(drop)
}

pub fn delete_registration(
    conn: &mut DbConnection,
    event: EventId,
    user: UserId,
) -> QueryResult<usize> {
    diesel::delete(registrations::table.find((event.to_string(), user.to_string()))).execute(conn)
}

/// The 1-based place of a waitlisted registration: how many of its event's waitlisted
/// registrations arrived before it, plus one.
pub fn waitlist_position(conn: &mut DbConnection, registration: &Registration) -> QueryResult<i64> {
    let (at, user) = (
        registration.created_at.naive_utc(),
        registration.user.to_string(),
    );
    let ahead: i64 = registrations::table
        .filter(registrations::event_id.eq(registration.event.to_string()))
        .filter(registrations::status.eq(RegistrationStatus::Waitlisted.as_str()))
        .filter(
            registrations::created_at
                .lt(at)
                .or(registrations::created_at
                    .eq(at)
                    .and(registrations::user_id.lt(user))),
        )
        .count()
        .get_result(conn)?;
    Ok(ahead + 1)
}

/// The `n` longest-waiting registrations of an event.
pub fn oldest_waitlisted(
    conn: &mut DbConnection,
    event: EventId,
    n: i64,
) -> Result<Vec<Registration>, EventsError> {
    into_registrations(
        registrations::table
            .filter(registrations::event_id.eq(event.to_string()))
            .filter(registrations::status.eq(RegistrationStatus::Waitlisted.as_str()))
            .order((
                registrations::created_at.asc(),
                registrations::user_id.asc(),
            ))
            .limit(n)
            .select(RegistrationRow::as_select())
            .load(conn)?,
    )
}

pub fn confirm(conn: &mut DbConnection, registration: &Registration) -> QueryResult<usize> {
    let key = (
        registration.event.to_string(),
        registration.user.to_string(),
    );
    diesel::update(registrations::table.find(key))
        .set(registrations::status.eq(RegistrationStatus::Confirmed.as_str()))
        .execute(conn)
}

/// Whose registrations a page lists.
#[derive(Debug, Clone, Copy)]
pub enum RegistrationsOf {
    /// One event's, in arrival order, ties broken by user id.
    Event(EventId),
    /// One user's, in arrival order, ties broken by event id.
    User(UserId),
}

/// One keyset page of registrations (`limit + 1` rows: the extra one says more follow).
pub fn registrations_page(
    conn: &mut DbConnection,
    of: RegistrationsOf,
    page: PageRequest,
) -> Result<Vec<Registration>, EventsError> {
    use registrations::{created_at, event_id, user_id};
    let after = page.after.map(|c| (c.at.naive_utc(), c.id.to_string()));
    let mut query = registrations::table
        .select(RegistrationRow::as_select())
        .order(created_at.asc())
        .limit(page.limit + 1)
        .into_boxed();
    match of {
        RegistrationsOf::Event(event) => {
            query = query
                .filter(event_id.eq(event.to_string()))
                .then_order_by(user_id.asc());
            if let Some((at, user)) = after {
                query = query
                    .filter(created_at.ge(at))
                    .filter(created_at.gt(at).or(user_id.gt(user)));
            }
        }
        RegistrationsOf::User(user) => {
            query = query
                .filter(user_id.eq(user.to_string()))
                .then_order_by(event_id.asc());
            if let Some((at, event)) = after {
                query = query
                    .filter(created_at.ge(at))
                    .filter(created_at.gt(at).or(event_id.gt(event)));
            }
        }
    }
    into_registrations(query.load(conn)?)
}

/// Everyone registered for `event` (seated or waiting), in registration order.
pub fn registered_users(
    conn: &mut DbConnection,
    event: EventId,
) -> Result<Vec<UserId>, EventsError> {
    let ids: Vec<String> = registrations::table
        .filter(registrations::event_id.eq(event.to_string()))
        .order(registrations::created_at.asc())
        .select(registrations::user_id)
        .load(conn)?;
    ids.iter()
        .map(|id| parse_id("registrations", id, id))
        .collect()
}

/// Every event the user is registered for.
pub fn events_registered_by(
    conn: &mut DbConnection,
    user: UserId,
) -> Result<Vec<EventId>, EventsError> {
    let ids: Vec<String> = registrations::table
        .filter(registrations::user_id.eq(user.to_string()))
        .select(registrations::event_id)
        .load(conn)?;
    ids.iter()
        .map(|id| parse_id("registrations", id, id))
        .collect()
}

/// The account locks of this module's writes (see [`AccountLock`]).
const ACCOUNT_LOCK: AccountLock = AccountLock { class: 0x7273_7601 };

/// Refuses a write for `user` once this module learnt of the account's deletion, and otherwise
/// locks the account's guard row until the transaction commits (see the `account_guards`
/// migration). The deletion cascade marks the same row first, under the same lock, before it
/// looks for the account's registrations and events: a write that passed this check is
/// committed, and seen by the cascade, before the cascade reads; a later one waits for the
/// cascade and then finds the mark. Call it before locking an event, the order the cascade
/// locks in.
///
/// `deleted` is what this process learnt already (the users module's own mark in the monolith,
/// the broadcast in the split), which refuses the account from the deletion's answer on, before
/// the cascade recorded it here.
pub fn ensure_account_alive(
    conn: &mut DbConnection,
    user: UserId,
    deleted: &DeletedAccounts,
) -> Result<(), EventsError> {
    if deleted.contains(user.as_uuid()) || !guard_alive(conn, user)? {
        return Err(EventsError::AccountGone);
    }
    Ok(())
}

/// Locks `user`'s guard row until the transaction ends; whether the account is alive.
fn guard_alive(conn: &mut DbConnection, user: UserId) -> QueryResult<bool> {
    // Inserted on the account's first write; a conflict locks the row and re-checks its latest
    // version, and an update that the `WHERE` refuses returns nothing.
    let sql = |p: &str| {
        format!(
            "INSERT INTO events_account_guards (user_id) VALUES ({p}) \
             ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id \
             WHERE events_account_guards.deleted_at IS NULL RETURNING user_id"
        )
    };
    let user = user.to_string();
    let alive: Option<GuardRow> = match conn {
        DbConnection::Postgres(pg) => diesel::sql_query(sql("$1"))
            .bind::<Text, _>(user)
            .get_result(pg)
            .optional()?,
        DbConnection::Sqlite(lite) => diesel::sql_query(sql("?1"))
            .bind::<Text, _>(user)
            .get_result(lite)
            .optional()?,
    };
    Ok(alive.is_some())
}

#[derive(QueryableByName)]
struct GuardRow {
    #[diesel(sql_type = Text)]
    #[allow(dead_code)]
    user_id: String,
}

/// Marks `user`'s guard row deleted, after the writes in flight for the account committed; new
/// ones wait for this transaction and then refuse (see [`ensure_account_alive`]). The deletion
/// cascade's first step. (It also takes the advisory lock the versions before the guard rows
/// shared, so that their writes, during a rolling upgrade, keep their turn too.)
pub fn lock_account_for_deletion(
    conn: &mut DbConnection,
    user: UserId,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    ACCOUNT_LOCK.take(conn, user.as_uuid())?;
    let sql = |p: [&str; 2]| {
        format!(
            "INSERT INTO events_account_guards (user_id, deleted_at) VALUES ({}, {}) \
             ON CONFLICT (user_id) DO UPDATE \
             SET deleted_at = COALESCE(events_account_guards.deleted_at, excluded.deleted_at)",
            p[0], p[1]
        )
    };
    let (user, at) = (user.to_string(), at.naive_utc());
    match conn {
        DbConnection::Postgres(pg) => diesel::sql_query(sql(["$1", "$2"]))
            .bind::<Text, _>(user)
            .bind::<diesel::sql_types::Timestamp, _>(at)
            .execute(pg),
        DbConnection::Sqlite(lite) => diesel::sql_query(sql(["?1", "?2"]))
            .bind::<Text, _>(user)
            .bind::<diesel::sql_types::Timestamp, _>(at)
            .execute(lite),
    }
    .map(drop)
}

/// Records that `user`'s account was deleted (once; later records change nothing).
pub fn record_deleted_user(
    conn: &mut DbConnection,
    user: UserId,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    let known = events_deleted_users::table
        .find(user.to_string())
        .select(events_deleted_users::user_id)
        .first::<String>(conn)
        .optional()?
        .is_some();
    if !known {
        diesel::insert_into(events_deleted_users::table)
            .values((
                events_deleted_users::user_id.eq(user.to_string()),
                events_deleted_users::deleted_at.eq(at.naive_utc()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Accounts learnt deleted at or after `since`, with when.
pub fn deleted_users_since(
    conn: &mut DbConnection,
    since: DateTime<Utc>,
) -> QueryResult<Vec<(String, NaiveDateTime)>> {
    events_deleted_users::table
        .filter(events_deleted_users::deleted_at.ge(since.naive_utc()))
        .select((
            events_deleted_users::user_id,
            events_deleted_users::deleted_at,
        ))
        .load(conn)
}

/// Makes `token_hash` the calendar feed of `user`, replacing (revoking) any other.
pub fn replace_feed(
    conn: &mut DbConnection,
    user: UserId,
    token_hash: &str,
    at: DateTime<Utc>,
) -> Result<(), EventsError> {
    revoke_feed(conn, user)?;
    diesel::insert_into(calendar_feeds::table)
        .values((
            calendar_feeds::user_id.eq(user.to_string()),
            calendar_feeds::token_hash.eq(token_hash),
            calendar_feeds::created_at.eq(at.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Ends `user`'s calendar feed, if any; whether there was one.
pub fn revoke_feed(conn: &mut DbConnection, user: UserId) -> Result<bool, EventsError> {
    let gone = diesel::delete(calendar_feeds::table.find(user.to_string())).execute(conn)?;
    Ok(gone > 0)
}

/// Whose calendar feed has the secret hashed to `token_hash`.
pub fn feed_owner(
    conn: &mut DbConnection,
    token_hash: &str,
) -> Result<Option<UserId>, EventsError> {
    let owner: Option<String> = calendar_feeds::table
        .filter(calendar_feeds::token_hash.eq(token_hash))
        .select(calendar_feeds::user_id)
        .first(conn)
        .optional()?;
    owner
        .map(|id| parse_id("calendar_feeds", &id, &id))
        .transpose()
}

/// Up to `limit` events `user` is registered for, with their registration's status, latest
/// start first (a calendar wants what is coming and what just was).
pub fn registered_events(
    conn: &mut DbConnection,
    user: UserId,
    limit: i64,
) -> Result<Vec<(Event, RegistrationStatus)>, EventsError> {
    let rows: Vec<(EventRow, String)> = events::table
        .inner_join(registrations::table)
        .filter(registrations::user_id.eq(user.to_string()))
        .order((events::starts_at.desc(), events::id.desc()))
        .limit(limit)
        .select((EventRow::as_select(), registrations::status))
        .load(conn)?;
    rows.into_iter()
        .map(|(row, status)| {
            let status = status.parse().map_err(|why| EventsError::CorruptRow {
                table: "registrations",
                key: row.id.clone(),
                why,
            })?;
            Ok((row.into_event()?, status))
        })
        .collect()
}
