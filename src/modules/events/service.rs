//! The events module's rules: events, registrations, capacity and the waitlist. Every change to
//! an event's seats happens in one write transaction that first locks the event's row.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Attendee, Event, EventFilter, EventStatus, MyRegistration, Person, Registration,
    domain::{EventDraft, EventInput, EventPatch, RegistrationStatus, admit, seats_to_fill},
    error::EventsError,
    store::{self, CANCELLED, EventRow, RegistrationRow, RegistrationsOf},
};
use crate::{
    modules::users::{USER_DELETED, UserDeleted, UsersApi},
    platform::{
        auth::{AuthUser, DeletedAccounts},
        db::{Db, DbConnection, is_unique_violation},
        messaging::{DeliveryError, DomainEvent, EventHandler},
        now,
        pagination::{Page, PageRequest, into_page},
    },
};

pub struct EventsService {
    db: Db,
    users: Arc<dyn UsersApi>,
    /// Deleted accounts whose access tokens this process refuses.
    deleted: Arc<DeletedAccounts>,
}

impl EventsService {
    pub fn new(db: Db, users: Arc<dyn UsersApi>, deleted: Arc<DeletedAccounts>) -> Self {
        Self { db, users, deleted }
    }

    /// Loads the deletions of the last token lifetime into [`DeletedAccounts`], so a restarted
    /// process goes on refusing their tokens.
    pub async fn recall_deleted_accounts(&self) -> Result<usize, EventsError> {
        let since = self.deleted.horizon(now());
        let rows = self
            .db
            .run(move |conn| store::deleted_users_since(conn, since).map_err(EventsError::from))
            .await?;
        Ok(self.deleted.insert_recorded(&rows))
    }

    pub async fn create(&self, caller: AuthUser, input: EventInput) -> Result<Event, EventsError> {
        let at = now();
        let draft = EventDraft::create(input, at).map_err(EventsError::Validation)?;
        // The organiser must still exist: a token can outlive its account.
        let names = self
            .users
            .public_profiles(&[caller.id])
            .await
            .map_err(|e| EventsError::UsersUnavailable(e.to_string()))?;
        let Some(organizer) = names.into_iter().next() else {
            return Err(EventsError::AccountGone);
        };
        let row = EventRow::new(Uuid::now_v7(), caller.id, draft, at);
        let row = self
            .db
            .write(move |conn| {
                store::insert_event(conn, &row)?;
                Ok::<_, EventsError>(row)
            })
            .await?;
        Ok(to_event(
            row,
            &HashMap::from([(organizer.id, organizer.name)]),
        ))
    }

    pub async fn get(&self, id: Uuid) -> Result<Event, EventsError> {
        let row = self
            .db
            .run(move |conn| store::find_event(conn, id).map_err(EventsError::from))
            .await?
            .ok_or(EventsError::EventNotFound)?;
        let names = self.names(&[row.organizer()]).await;
        Ok(to_event(row, &names))
    }

    pub async fn list(
        &self,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>, EventsError> {
        let rows = self
            .db
            .run(move |conn| store::list_events(conn, &filter, page).map_err(EventsError::from))
            .await?;
        let organizers: Vec<Uuid> = rows.iter().map(EventRow::organizer).collect();
        let names = self.names(&organizers).await;
        Ok(into_page(rows, page, EventRow::cursor, |row| {
            to_event(row, &names)
        }))
    }

    pub async fn update(
        &self,
        caller: AuthUser,
        id: Uuid,
        patch: EventPatch,
    ) -> Result<Event, EventsError> {
        let row = self
            .db
            .write(move |conn| {
                let at = now();
                let mut event =
                    store::lock_event(conn, id, at)?.ok_or(EventsError::EventNotFound)?;
                ensure_organizer(&caller, &event)?;
                if event.is_cancelled() {
                    return Err(EventsError::EventCancelled);
                }
                let draft = event
                    .draft()
                    .apply(patch, at)
                    .map_err(EventsError::Validation)?;
                if draft.capacity < event.seats_taken {
                    return Err(EventsError::CapacityBelowSeatsTaken {
                        seats_taken: event.seats_taken,
                    });
                }
                event.set_draft(draft);
                // A larger capacity seats waitlisted people now, not at the next cancellation.
                promote_waitlisted(conn, &mut event)?;
                store::save_event(conn, &event)?;
                Ok(event)
            })
            .await?;
        let names = self.names(&[row.organizer()]).await;
        Ok(to_event(row, &names))
    }

    /// Cancels the event; cancelling a cancelled event again changes nothing.
    pub async fn cancel(&self, caller: AuthUser, id: Uuid) -> Result<(), EventsError> {
        self.db
            .write(move |conn| {
                let mut event =
                    store::lock_event(conn, id, now())?.ok_or(EventsError::EventNotFound)?;
                ensure_organizer(&caller, &event)?;
                if !event.is_cancelled() {
                    event.status = CANCELLED.to_owned();
                    store::save_event(conn, &event)?;
                }
                Ok(())
            })
            .await
    }

    pub async fn register(
        &self,
        caller: AuthUser,
        event_id: Uuid,
    ) -> Result<Registration, EventsError> {
        let deleted = self.deleted.clone();
        let (row, position) = self
            .db
            .write(move |conn| {
                let mut event =
                    store::lock_event(conn, event_id, now())?.ok_or(EventsError::EventNotFound)?;
                // Under the lock: arrival order is admission order, and `created_at` says it.
                let at = now();
                if deleted.contains(caller.id) {
                    return Err(EventsError::AccountGone);
                }
                if event.is_cancelled() {
                    return Err(EventsError::RegistrationClosed("cancelled"));
                }
                if event.starts_at <= at.naive_utc() {
                    return Err(EventsError::RegistrationClosed("already started"));
                }
                if store::find_registration(conn, event_id, caller.id)?.is_some() {
                    return Err(EventsError::AlreadyRegistered);
                }
                let status = admit(event.seats_taken, event.capacity);
                let position = match status {
                    RegistrationStatus::Confirmed => {
                        event.seats_taken += 1;
                        None
                    }
                    RegistrationStatus::Waitlisted => {
                        event.waitlist_length += 1;
                        Some(i64::from(event.waitlist_length))
                    }
                };
                let row = RegistrationRow {
                    event_id: event.id.clone(),
                    user_id: caller.id.to_string(),
                    status: status.as_str().to_owned(),
                    created_at: at.naive_utc(),
                };
                match store::insert_registration(conn, &row) {
                    Err(e) if is_unique_violation(&e) => {
                        return Err(EventsError::AlreadyRegistered);
                    }
                    other => other?,
                }
                store::save_event(conn, &event)?;
                Ok((row, position))
            })
            .await?;
        Ok(to_registration(&row, position))
    }

    /// Withdraws the caller; a freed seat goes to the longest-waiting person in the same
    /// transaction.
    pub async fn unregister(&self, caller: AuthUser, event_id: Uuid) -> Result<(), EventsError> {
        self.db
            .write(move |conn| {
                let mut event =
                    store::lock_event(conn, event_id, now())?.ok_or(EventsError::EventNotFound)?;
                if !release_registration(conn, &mut event, caller.id)? {
                    return Err(EventsError::RegistrationNotFound);
                }
                Ok(())
            })
            .await
    }

    pub async fn attendees(
        &self,
        caller: AuthUser,
        event_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<Attendee>, EventsError> {
        let rows = self
            .db
            .run(move |conn| {
                let event = store::find_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                ensure_organizer(&caller, &event)?;
                Ok::<_, EventsError>(store::registrations_page(
                    conn,
                    RegistrationsOf::Event(event_id),
                    page,
                )?)
            })
            .await?;
        let users: Vec<Uuid> = rows.iter().map(RegistrationRow::user).collect();
        let names = self.names(&users).await;
        Ok(into_page(
            rows,
            page,
            RegistrationRow::cursor_by_user,
            |row| Attendee {
                user: person(row.user(), &names),
                status: status_of(&row),
                created_at: row.created_at.and_utc(),
            },
        ))
    }

    pub async fn registrations_of(
        &self,
        caller: AuthUser,
        page: PageRequest,
    ) -> Result<Page<MyRegistration>, EventsError> {
        let (rows, events) = self
            .db
            .run(move |conn| {
                let rows = store::registrations_page(conn, RegistrationsOf::User(caller.id), page)?;
                let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
                let events = store::find_events(conn, &ids)?;
                let rows = rows
                    .into_iter()
                    .map(|row| {
                        let position = match row.status() {
                            RegistrationStatus::Waitlisted => {
                                Some(store::waitlist_position(conn, &row)?)
                            }
                            RegistrationStatus::Confirmed => None,
                        };
                        Ok::<_, EventsError>((row, position))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, EventsError>((rows, events))
            })
            .await?;
        let organizers: Vec<Uuid> = events.iter().map(EventRow::organizer).collect();
        let names = self.names(&organizers).await;
        let mut events: HashMap<String, EventRow> =
            events.into_iter().map(|e| (e.id.clone(), e)).collect();
        let mut page = into_page(
            rows,
            page,
            |(row, _)| row.cursor_by_event(),
            |(row, position)| {
                events.remove(&row.event_id).map(|event| MyRegistration {
                    event: to_event(event, &names),
                    status: status_of(&row),
                    position,
                    created_at: row.created_at.and_utc(),
                })
            },
        );
        Ok(Page {
            items: page.items.drain(..).flatten().collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The `user.deleted` cascade: the user's registrations go (promoting waitlisted people),
    /// their scheduled events are cancelled. Idempotent by message id.
    pub async fn apply_user_deleted(
        &self,
        message_id: Uuid,
        user: Uuid,
        deleted_at: DateTime<Utc>,
    ) -> Result<bool, EventsError> {
        // Refused from now on, before the cascade: a registration racing it can not add a seat
        // the cascade has already passed by.
        self.deleted.insert(user, deleted_at);
        self.db
            .write(move |conn| {
                let at = now();
                if !store::record_handled(conn, message_id, USER_DELETED, at)? {
                    return Ok(false);
                }
                store::record_deleted_user(conn, user, deleted_at)?;
                let registered = store::events_registered_by(conn, user)?;
                let organised = store::scheduled_events_of(conn, user)?;
                // Lock in one global order (by id) so concurrent cascades can not deadlock.
                let mut ids: Vec<&String> = registered.iter().chain(&organised).collect();
                ids.sort();
                ids.dedup();
                for id in ids {
                    let Ok(id) = id.parse::<Uuid>() else { continue };
                    let Some(mut event) = store::lock_event(conn, id, at)? else {
                        continue;
                    };
                    release_registration(conn, &mut event, user)?;
                    if event.organizer() == user && !event.is_cancelled() {
                        event.status = CANCELLED.to_owned();
                        store::save_event(conn, &event)?;
                    }
                }
                Ok(true)
            })
            .await
    }

    /// Display names of `ids`, one batched call. Reads stay up when the users module is down:
    /// the names are then simply missing (`null`).
    async fn names(&self, ids: &[Uuid]) -> HashMap<Uuid, String> {
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        match self.users.public_profiles(&unique).await {
            Ok(profiles) => profiles.into_iter().map(|p| (p.id, p.name)).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "names unavailable; answering without them");
                HashMap::new()
            }
        }
    }
}

fn ensure_organizer(caller: &AuthUser, event: &EventRow) -> Result<(), EventsError> {
    if caller.is_admin() || event.organizer() == caller.id {
        Ok(())
    } else {
        Err(EventsError::NotOrganizer)
    }
}

/// Removes `user`'s registration from a locked event and refills the seat. `false` when there
/// was none.
fn release_registration(
    conn: &mut DbConnection,
    event: &mut EventRow,
    user: Uuid,
) -> Result<bool, EventsError> {
    let Some(registration) = store::find_registration(conn, event.uuid(), user)? else {
        return Ok(false);
    };
    store::delete_registration(conn, event.uuid(), user)?;
    match registration.status() {
        RegistrationStatus::Confirmed => event.seats_taken -= 1,
        RegistrationStatus::Waitlisted => event.waitlist_length -= 1,
    }
    promote_waitlisted(conn, event)?;
    store::save_event(conn, event)?;
    Ok(true)
}

/// Confirms the longest-waiting registrations while seats are free.
fn promote_waitlisted(conn: &mut DbConnection, event: &mut EventRow) -> Result<(), EventsError> {
    let n = seats_to_fill(event.capacity, event.seats_taken, event.waitlist_length);
    if n == 0 {
        return Ok(());
    }
    for waiting in store::oldest_waitlisted(conn, event.uuid(), i64::from(n))? {
        store::confirm(conn, &waiting.event_id, &waiting.user_id)?;
        event.seats_taken += 1;
        event.waitlist_length -= 1;
        tracing::info!(event_id = %event.id, user_id = %waiting.user_id, "promoted from waitlist");
    }
    Ok(())
}

fn person(id: Uuid, names: &HashMap<Uuid, String>) -> Person {
    Person {
        id,
        name: names.get(&id).cloned(),
    }
}

fn status_of(row: &RegistrationRow) -> super::RegistrationState {
    match row.status() {
        RegistrationStatus::Confirmed => super::RegistrationState::Confirmed,
        RegistrationStatus::Waitlisted => super::RegistrationState::Waitlisted,
    }
}

fn to_registration(row: &RegistrationRow, position: Option<i64>) -> Registration {
    Registration {
        event_id: row.event(),
        user_id: row.user(),
        status: status_of(row),
        position,
        created_at: row.created_at.and_utc(),
    }
}

fn to_event(row: EventRow, names: &HashMap<Uuid, String>) -> Event {
    let utc = |t: chrono::NaiveDateTime| -> DateTime<Utc> { t.and_utc() };
    Event {
        id: row.uuid(),
        organizer: person(row.organizer(), names),
        status: if row.is_cancelled() {
            EventStatus::Cancelled
        } else {
            EventStatus::Scheduled
        },
        title: row.title,
        description: row.description,
        location: row.location,
        category: row.category,
        starts_at: utc(row.starts_at),
        ends_at: utc(row.ends_at),
        capacity: row.capacity,
        seats_taken: row.seats_taken,
        waitlist_length: row.waitlist_length,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    }
}

/// Consumes `user.deleted` for the events module.
pub struct UserDeletedHandler(pub Arc<EventsService>);

#[async_trait]
impl EventHandler for UserDeletedHandler {
    fn topics(&self) -> &'static [&'static str] {
        &[USER_DELETED]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        let payload: UserDeleted = serde_json::from_value(event.payload.clone()).map_err(|e| {
            DeliveryError::because(format!("malformed {USER_DELETED} payload: {e}"))
        })?;
        let applied = self
            .0
            .apply_user_deleted(event.id, payload.user_id, event.occurred_at)
            .await
            .map_err(DeliveryError::because)?;
        tracing::info!(user_id = %payload.user_id, message_id = %event.id, applied, "handled user.deleted");
        Ok(())
    }
}
