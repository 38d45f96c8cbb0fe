//! The events module's use cases: load the event aggregate (locking its row for any change to
//! its seats), let it decide (`domain.rs`), save it, and shape the answer. Every change to an
//! event's seats happens in one write transaction that first locks the event's row.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Attendee, Event, EventFilter, EventStatus, MyRegistration, Person, Registration,
    RegistrationStatus,
    domain::{self, EventDraft, EventId, EventInput, EventPatch},
    error::EventsError,
    store::{self, RegistrationsOf},
};
use crate::{
    modules::users::{USER_DELETED, UserDeleted, UsersApi},
    platform::{
        auth::{AuthUser, DeletedAccounts},
        db::{Db, DbConnection, is_unique_violation},
        ids::UserId,
        messaging::{DeliveryError, DomainEvent, EventHandler},
        now,
        pagination::{Page, PageRequest, into_page},
    },
};

/// The in-process implementation of the events module's use cases.
pub struct EventsService {
    db: Db,
    users: Arc<dyn UsersApi>,
    /// Deleted accounts whose access tokens this process refuses.
    deleted: Arc<DeletedAccounts>,
}

impl EventsService {
    /// The module on its database, asking `users` for names, refusing `deleted` accounts.
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

    /// Publishes an event organised by the caller.
    pub async fn create(&self, caller: AuthUser, input: EventInput) -> Result<Event, EventsError> {
        let at = now();
        let draft = EventDraft::create(input, at).map_err(EventsError::Validation)?;
        // The organiser must still exist: a token can outlive its account.
        let names = self
            .users
            .public_profiles(&[caller.id.as_uuid()])
            .await
            .map_err(|e| EventsError::UsersUnavailable(e.to_string()))?;
        let Some(organizer) = names.into_iter().next() else {
            return Err(EventsError::AccountGone);
        };
        let event = domain::Event::new(caller.id, draft, at);
        let event = self
            .db
            .write(move |conn| store::insert_event(conn, &event).map(|()| event))
            .await?;
        Ok(to_event(
            event,
            &HashMap::from([(organizer.id, organizer.name)]),
        ))
    }

    /// One event, cancelled ones included.
    pub async fn get(&self, id: EventId) -> Result<Event, EventsError> {
        let event = self
            .db
            .run(move |conn| store::find_event(conn, id))
            .await?
            .ok_or(EventsError::EventNotFound)?;
        let names = self.names(&[event.organizer]).await;
        Ok(to_event(event, &names))
    }

    /// A page of events matching `filter`, by start time, then id.
    pub async fn list(
        &self,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>, EventsError> {
        let events = self
            .db
            .run(move |conn| store::list_events(conn, &filter, page))
            .await?;
        let organizers: Vec<UserId> = events.iter().map(|e| e.organizer).collect();
        let names = self.names(&organizers).await;
        Ok(into_page(events, page, store::cursor_by_start, |event| {
            to_event(event, &names)
        }))
    }

    /// Revises an event (organiser or admin); a larger capacity seats waitlisted people at once.
    pub async fn update(
        &self,
        caller: AuthUser,
        id: EventId,
        patch: EventPatch,
    ) -> Result<Event, EventsError> {
        let event = self
            .db
            .write(move |conn| {
                let mut event = locked_for(conn, id, &caller)?;
                event.revise(patch, now())?;
                // A larger capacity seats waitlisted people now, not at the next cancellation.
                promote_waitlisted(conn, &mut event)?;
                store::save_event(conn, &event)?;
                Ok::<_, EventsError>(event)
            })
            .await?;
        let names = self.names(&[event.organizer]).await;
        Ok(to_event(event, &names))
    }

    /// Cancels the event; cancelling a cancelled event again changes nothing.
    pub async fn cancel(&self, caller: AuthUser, id: EventId) -> Result<(), EventsError> {
        self.db
            .write(move |conn| {
                let mut event = locked_for(conn, id, &caller)?;
                if event.cancel(now()) {
                    store::save_event(conn, &event)?;
                }
                Ok(())
            })
            .await
    }

    /// Registers the caller: a seat while one is free, else a place on the waitlist.
    pub async fn register(
        &self,
        caller: AuthUser,
        event_id: EventId,
    ) -> Result<Registration, EventsError> {
        let deleted = self.deleted.clone();
        self.db
            .write(move |conn| {
                let mut event =
                    store::lock_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                // Under the lock: arrival order is admission order, and `created_at` says it.
                let at = now();
                if deleted.contains(caller.id.as_uuid()) {
                    return Err(EventsError::AccountGone);
                }
                event.ensure_open(at)?;
                if store::find_registration(conn, event_id, caller.id)?.is_some() {
                    return Err(EventsError::AlreadyRegistered);
                }
                let admission = event.admit(at)?;
                let registration = domain::Registration {
                    event: event_id,
                    user: caller.id,
                    status: admission.status(),
                    created_at: at,
                };
                match store::insert_registration(conn, &registration) {
                    Err(e) if is_unique_violation(&e) => {
                        return Err(EventsError::AlreadyRegistered);
                    }
                    other => other?,
                }
                store::save_event(conn, &event)?;
                Ok(to_registration(&registration, admission.position()))
            })
            .await
    }

    /// Withdraws the caller; a freed seat goes to the longest-waiting person in the same
    /// transaction.
    pub async fn unregister(&self, caller: AuthUser, event_id: EventId) -> Result<(), EventsError> {
        self.db
            .write(move |conn| {
                let mut event =
                    store::lock_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                if !release_registration(conn, &mut event, caller.id)? {
                    return Err(EventsError::RegistrationNotFound);
                }
                Ok(())
            })
            .await
    }

    /// A page of an event's registrations, for its organiser or an admin.
    pub async fn attendees(
        &self,
        caller: AuthUser,
        event_id: EventId,
        page: PageRequest,
    ) -> Result<Page<Attendee>, EventsError> {
        let registrations = self
            .db
            .run(move |conn| {
                let event = store::find_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                ensure_organizer(&caller, &event)?;
                store::registrations_page(conn, RegistrationsOf::Event(event_id), page)
            })
            .await?;
        let users: Vec<UserId> = registrations.iter().map(|r| r.user).collect();
        let names = self.names(&users).await;
        Ok(into_page(
            registrations,
            page,
            store::cursor_by_user,
            |registration| Attendee {
                user: person(registration.user, &names),
                status: registration.status,
                created_at: registration.created_at,
            },
        ))
    }

    /// A page of the caller's registrations, each with its event and waitlist position.
    pub async fn registrations_of(
        &self,
        caller: AuthUser,
        page: PageRequest,
    ) -> Result<Page<MyRegistration>, EventsError> {
        let (registrations, events) = self
            .db
            .run(move |conn| {
                let of = RegistrationsOf::User(caller.id);
                let registrations = store::registrations_page(conn, of, page)?;
                let ids: Vec<EventId> = registrations.iter().map(|r| r.event).collect();
                let events = store::find_events(conn, &ids)?;
                let registrations = registrations
                    .into_iter()
                    .map(|registration| {
                        let position = match registration.status {
                            RegistrationStatus::Waitlisted => {
                                Some(store::waitlist_position(conn, &registration)?)
                            }
                            RegistrationStatus::Confirmed => None,
                        };
                        Ok::<_, EventsError>((registration, position))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, EventsError>((registrations, events))
            })
            .await?;
        let organizers: Vec<UserId> = events.iter().map(|e| e.organizer).collect();
        let names = self.names(&organizers).await;
        let mut events: HashMap<EventId, domain::Event> =
            events.into_iter().map(|e| (e.id, e)).collect();
        let mut page = into_page(
            registrations,
            page,
            |(registration, _)| store::cursor_by_event(registration),
            |(registration, position)| {
                events
                    .remove(&registration.event)
                    .map(|event| MyRegistration {
                        event: to_event(event, &names),
                        status: registration.status,
                        position,
                        created_at: registration.created_at,
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
        user: UserId,
        deleted_at: DateTime<Utc>,
    ) -> Result<bool, EventsError> {
        // Refused from now on, before the cascade: a registration racing it can not add a seat
        // the cascade has already passed by.
        self.deleted.insert(user.as_uuid(), deleted_at);
        self.db
            .write(move |conn| {
                let at = now();
                if !store::record_handled(conn, message_id, USER_DELETED, at)? {
                    return Ok(false);
                }
                store::record_deleted_user(conn, user, deleted_at)?;
                let mut ids = store::events_registered_by(conn, user)?;
                ids.extend(store::scheduled_events_of(conn, user)?);
                // Lock in one global order (by id) so concurrent cascades can not deadlock.
                ids.sort();
                ids.dedup();
                for id in ids {
                    let Some(mut event) = store::lock_event(conn, id)? else {
                        continue;
                    };
                    release_registration(conn, &mut event, user)?;
                    if event.organizer == user && event.cancel(at) {
                        store::save_event(conn, &event)?;
                    }
                }
                Ok(true)
            })
            .await
    }

    /// Display names of `ids`, one batched call. Reads stay up when the users module is down:
    /// the names are then simply missing (`null`).
    async fn names(&self, ids: &[UserId]) -> HashMap<Uuid, String> {
        let mut unique: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
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

/// The event, locked, if `caller` may change it.
fn locked_for(
    conn: &mut DbConnection,
    id: EventId,
    caller: &AuthUser,
) -> Result<domain::Event, EventsError> {
    let event = store::lock_event(conn, id)?.ok_or(EventsError::EventNotFound)?;
    ensure_organizer(caller, &event)?;
    Ok(event)
}

fn ensure_organizer(caller: &AuthUser, event: &domain::Event) -> Result<(), EventsError> {
    if event.may_be_changed_by(caller.id, caller.is_admin()) {
        Ok(())
    } else {
        Err(EventsError::NotOrganizer)
    }
}

/// Removes `user`'s registration from a locked event and refills the seat. `false` when there
/// was none.
fn release_registration(
    conn: &mut DbConnection,
    event: &mut domain::Event,
    user: UserId,
) -> Result<bool, EventsError> {
    let Some(registration) = store::find_registration(conn, event.id, user)? else {
        return Ok(false);
    };
    store::delete_registration(conn, event.id, user)?;
    event.release(registration.status, now());
    promote_waitlisted(conn, event)?;
    store::save_event(conn, event)?;
    Ok(true)
}

/// Confirms the longest-waiting registrations while seats are free.
fn promote_waitlisted(
    conn: &mut DbConnection,
    event: &mut domain::Event,
) -> Result<(), EventsError> {
    let n = event.seats_to_fill();
    if n == 0 {
        return Ok(());
    }
    for waiting in store::oldest_waitlisted(conn, event.id, i64::from(n))? {
        store::confirm(conn, &waiting)?;
        event.promote_one();
        tracing::info!(event_id = %event.id, user_id = %waiting.user, "promoted from waitlist");
    }
    Ok(())
}

fn person(id: UserId, names: &HashMap<Uuid, String>) -> Person {
    Person {
        id: id.as_uuid(),
        name: names.get(&id.as_uuid()).cloned(),
    }
}

fn to_registration(registration: &domain::Registration, position: Option<i64>) -> Registration {
    Registration {
        event_id: registration.event.as_uuid(),
        user_id: registration.user.as_uuid(),
        status: registration.status,
        position,
        created_at: registration.created_at,
    }
}

fn to_event(event: domain::Event, names: &HashMap<Uuid, String>) -> Event {
    Event {
        id: event.id.as_uuid(),
        organizer: person(event.organizer, names),
        status: if event.is_cancelled() {
            EventStatus::Cancelled
        } else {
            EventStatus::Scheduled
        },
        seats_taken: event.seats_taken(),
        waitlist_length: event.waitlist_length(),
        title: event.draft.title,
        description: event.draft.description,
        location: event.draft.location,
        category: event.draft.category,
        starts_at: event.draft.starts_at,
        ends_at: event.draft.ends_at,
        capacity: event.draft.capacity,
        created_at: event.created_at,
        updated_at: event.updated_at,
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
        let user = UserId::from(payload.user_id);
        let applied = self
            .0
            .apply_user_deleted(event.id, user, event.occurred_at)
            .await
            .map_err(DeliveryError::because)?;
        tracing::info!(user_id = %payload.user_id, message_id = %event.id, applied, "handled user.deleted");
        Ok(())
    }
}
