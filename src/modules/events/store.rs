//! The events module's diesel queries. Only this module's tables are named here.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::{
    EventFilter,
    domain::{EventDraft, RegistrationStatus, filter_key},
    schema::{events, events_deleted_users, events_inbox, registrations},
};
use crate::platform::{
    db::DbConnection,
    pagination::{Cursor, PageRequest},
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = events, treat_none_as_null = true)]
pub struct EventRow {
    pub id: String,
    pub organizer_id: String,
    pub title: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub location_key: Option<String>,
    pub category: Option<String>,
    pub category_key: Option<String>,
    pub starts_at: NaiveDateTime,
    pub ends_at: NaiveDateTime,
    pub capacity: i32,
    pub seats_taken: i32,
    pub waitlist_length: i32,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub const SCHEDULED: &str = "scheduled";
pub const CANCELLED: &str = "cancelled";

impl EventRow {
    pub fn new(id: Uuid, organizer: Uuid, draft: EventDraft, now: DateTime<Utc>) -> Self {
        let mut row = Self {
            id: id.to_string(),
            organizer_id: organizer.to_string(),
            title: String::new(),
            description: None,
            location: None,
            location_key: None,
            category: None,
            category_key: None,
            starts_at: now.naive_utc(),
            ends_at: now.naive_utc(),
            capacity: 1,
            seats_taken: 0,
            waitlist_length: 0,
            status: SCHEDULED.to_owned(),
            created_at: now.naive_utc(),
            updated_at: now.naive_utc(),
        };
        row.set_draft(draft);
        row
    }

    pub fn set_draft(&mut self, draft: EventDraft) {
        self.location_key = draft.location.as_deref().map(filter_key);
        self.category_key = draft.category.as_deref().map(filter_key);
        self.title = draft.title;
        self.description = draft.description;
        self.location = draft.location;
        self.category = draft.category;
        self.starts_at = draft.starts_at.naive_utc();
        self.ends_at = draft.ends_at.naive_utc();
        self.capacity = draft.capacity;
    }

    pub fn draft(&self) -> EventDraft {
        EventDraft {
            title: self.title.clone(),
            description: self.description.clone(),
            location: self.location.clone(),
            category: self.category.clone(),
            starts_at: self.starts_at.and_utc(),
            ends_at: self.ends_at.and_utc(),
            capacity: self.capacity,
        }
    }

    pub fn uuid(&self) -> Uuid {
        self.id.parse().unwrap_or_default()
    }

    pub fn organizer(&self) -> Uuid {
        self.organizer_id.parse().unwrap_or_default()
    }

    pub fn is_cancelled(&self) -> bool {
        self.status == CANCELLED
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            at: self.starts_at.and_utc(),
            id: self.uuid(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = registrations)]
pub struct RegistrationRow {
    pub event_id: String,
    pub user_id: String,
    pub status: String,
    pub created_at: NaiveDateTime,
}

impl RegistrationRow {
    pub fn status(&self) -> RegistrationStatus {
        RegistrationStatus::parse(&self.status)
    }

    pub fn user(&self) -> Uuid {
        self.user_id.parse().unwrap_or_default()
    }

    pub fn event(&self) -> Uuid {
        self.event_id.parse().unwrap_or_default()
    }

    /// Position in an event's list: registration time, ties broken by user id.
    pub fn cursor_by_user(&self) -> Cursor {
        Cursor {
            at: self.created_at.and_utc(),
            id: self.user(),
        }
    }

    /// Position in a user's list: registration time, ties broken by event id.
    pub fn cursor_by_event(&self) -> Cursor {
        Cursor {
            at: self.created_at.and_utc(),
            id: self.event(),
        }
    }
}

pub fn insert_event(conn: &mut DbConnection, row: &EventRow) -> QueryResult<()> {
    diesel::insert_into(events::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn find_event(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<EventRow>> {
    events::table
        .find(id.to_string())
        .select(EventRow::as_select())
        .first(conn)
        .optional()
}

/// Takes the event's row lock (PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises
/// writers) and reads it. Every change to an event's seats goes through here first, so two
/// transactions never decide on the same seat at once.
pub fn lock_event(
    conn: &mut DbConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Option<EventRow>> {
    let touched = diesel::update(events::table.find(id.to_string()))
        .set(events::updated_at.eq(now.naive_utc()))
        .execute(conn)?;
    if touched == 0 {
        return Ok(None);
    }
    find_event(conn, id)
}

pub fn save_event(conn: &mut DbConnection, row: &EventRow) -> QueryResult<usize> {
    diesel::update(events::table.find(&row.id))
        .set(row)
        .execute(conn)
}

pub fn list_events(
    conn: &mut DbConnection,
    filter: &EventFilter,
    page: PageRequest,
) -> QueryResult<Vec<EventRow>> {
    let status = if filter.cancelled {
        CANCELLED
    } else {
        SCHEDULED
    };
    let mut query = events::table
        .filter(events::status.eq(status))
        .select(EventRow::as_select())
        .order((events::starts_at.asc(), events::id.asc()))
        .limit(page.limit + 1)
        .into_boxed();
    if let Some(from) = filter.from {
        query = query.filter(events::starts_at.ge(from.naive_utc()));
    }
    if let Some(to) = filter.to {
        query = query.filter(events::starts_at.le(to.naive_utc()));
    }
    if let Some(organizer) = filter.organizer_id {
        query = query.filter(events::organizer_id.eq(organizer.to_string()));
    }
    if let Some(category) = &filter.category {
        query = query.filter(events::category_key.eq(filter_key(category)));
    }
    if let Some(location) = &filter.location {
        query = query.filter(events::location_key.eq(filter_key(location)));
    }
    if let Some(after) = page.after {
        let at = after.at.naive_utc();
        query = query.filter(
            events::starts_at.gt(at).or(events::starts_at
                .eq(at)
                .and(events::id.gt(after.id.to_string()))),
        );
    }
    query.load(conn)
}

pub fn find_events(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<EventRow>> {
    events::table
        .filter(events::id.eq_any(ids))
        .select(EventRow::as_select())
        .load(conn)
}

/// Scheduled events the user organises, in id order (a stable lock order).
pub fn scheduled_events_of(conn: &mut DbConnection, organizer: Uuid) -> QueryResult<Vec<String>> {
    events::table
        .filter(events::organizer_id.eq(organizer.to_string()))
        .filter(events::status.eq(SCHEDULED))
        .select(events::id)
        .order(events::id.asc())
        .load(conn)
}

pub fn find_registration(
    conn: &mut DbConnection,
    event: Uuid,
    user: Uuid,
) -> QueryResult<Option<RegistrationRow>> {
    registrations::table
        .find((event.to_string(), user.to_string()))
        .select(RegistrationRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_registration(conn: &mut DbConnection, row: &RegistrationRow) -> QueryResult<()> {
    diesel::insert_into(registrations::table)
        .values(row)
        .execute(conn)
        .map(drop)
}

pub fn delete_registration(conn: &mut DbConnection, event: Uuid, user: Uuid) -> QueryResult<usize> {
    diesel::delete(registrations::table.find((event.to_string(), user.to_string()))).execute(conn)
}

/// The 1-based place of a waitlisted registration: how many of its event's waitlisted
/// registrations arrived before it, plus one.
pub fn waitlist_position(conn: &mut DbConnection, row: &RegistrationRow) -> QueryResult<i64> {
    let ahead: i64 = registrations::table
        .filter(registrations::event_id.eq(&row.event_id))
        .filter(registrations::status.eq(RegistrationStatus::Waitlisted.as_str()))
        .filter(
            registrations::created_at
                .lt(row.created_at)
                .or(registrations::created_at
                    .eq(row.created_at)
                    .and(registrations::user_id.lt(&row.user_id))),
        )
        .count()
        .get_result(conn)?;
    Ok(ahead + 1)
}

/// The `n` longest-waiting registrations of an event.
pub fn oldest_waitlisted(
    conn: &mut DbConnection,
    event: Uuid,
    n: i64,
) -> QueryResult<Vec<RegistrationRow>> {
    registrations::table
        .filter(registrations::event_id.eq(event.to_string()))
        .filter(registrations::status.eq(RegistrationStatus::Waitlisted.as_str()))
        .order((
            registrations::created_at.asc(),
            registrations::user_id.asc(),
        ))
        .limit(n)
        .select(RegistrationRow::as_select())
        .load(conn)
}

pub fn confirm(conn: &mut DbConnection, event: &str, user: &str) -> QueryResult<usize> {
    diesel::update(registrations::table.find((event, user)))
        .set(registrations::status.eq(RegistrationStatus::Confirmed.as_str()))
        .execute(conn)
}

/// Whose registrations a page lists.
#[derive(Debug, Clone, Copy)]
pub enum RegistrationsOf {
    /// One event's, in arrival order, ties broken by user id.
    Event(Uuid),
    /// One user's, in arrival order, ties broken by event id.
    User(Uuid),
}

/// One keyset page of registrations (`limit + 1` rows: the extra one says more follow).
pub fn registrations_page(
    conn: &mut DbConnection,
    of: RegistrationsOf,
    page: PageRequest,
) -> QueryResult<Vec<RegistrationRow>> {
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
                query = query.filter(
                    created_at
                        .gt(at)
                        .or(created_at.eq(at).and(user_id.gt(user))),
                );
            }
        }
        RegistrationsOf::User(user) => {
            query = query
                .filter(user_id.eq(user.to_string()))
                .then_order_by(event_id.asc());
            if let Some((at, event)) = after {
                query = query.filter(
                    created_at
                        .gt(at)
                        .or(created_at.eq(at).and(event_id.gt(event))),
                );
            }
        }
    }
    query.load(conn)
}

/// Every event the user is registered for, in id order (a stable lock order).
pub fn events_registered_by(conn: &mut DbConnection, user: Uuid) -> QueryResult<Vec<String>> {
    registrations::table
        .filter(registrations::user_id.eq(user.to_string()))
        .select(registrations::event_id)
        .order(registrations::event_id.asc())
        .load(conn)
}

/// Records a handled domain event; `false` when it had been handled before.
pub fn record_handled(
    conn: &mut DbConnection,
    message_id: Uuid,
    topic: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let seen = events_inbox::table
        .find(message_id.to_string())
        .select(events_inbox::message_id)
        .first::<String>(conn)
        .optional()?
        .is_some();
    if seen {
        return Ok(false);
    }
    diesel::insert_into(events_inbox::table)
        .values((
            events_inbox::message_id.eq(message_id.to_string()),
            events_inbox::topic.eq(topic),
            events_inbox::handled_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Records that `user`'s account was deleted (once; later records change nothing).
pub fn record_deleted_user(
    conn: &mut DbConnection,
    user: Uuid,
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
