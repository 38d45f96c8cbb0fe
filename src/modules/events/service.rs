//! The events module's use cases: load the event aggregate (locking its row for any change to
//! its seats), let it decide (`domain.rs`), save it, and shape the answer. Every change to an
//! event's seats happens in one write transaction that first locks the event's row.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    ATTENDEES_PER_EVENT, Attendee, EVENT_CANCELLED, EVENT_CHANGED, EVENT_CHANGES, Event,
    EventCancelled, EventChanged, EventFilter, EventStatus, EventSummary, EventsApi,
    EventsApiError, MyRegistration, Person, Registration, RegistrationStatus, SEAT_OBTAINED,
    SeatObtained, Seats, When,
    admissions::Admissions,
    cache::{AttendeePages, CachedName, EventCaches, ListKey, ListedPage},
    calendar,
    domain::{self, EventDraft, EventId, EventInput, EventPatch},
    error::EventsError,
    search,
    store::{self, RegistrationsOf, Withdrawal},
};
use crate::{
    modules::users::{PROFILE_CHANGES, USER_DELETED, UserDeleted, UsersApi, UsersApiError},
    platform::{
        auth::{AuthUser, DeletedAccounts},
        changes::{CacheTags, Change, Changes, Tag, note},
        compression::Encodings,
        db::{Db, DbConnection, write_transaction},
        ids::UserId,
        now,
        outbox::{Inbox, Outbox},
        pagination::{Page, PageRequest, into_page},
        read_cache::{CacheMetrics, CacheSettings, Ticket},
        secret,
    },
};
use modkit::events::{DeliveryError, DomainEvent, EventHandler};

/// The in-process implementation of the events module's use cases.
pub struct EventsService {
    db: Db,
    users: Arc<dyn UsersApi>,
    /// Deleted accounts whose access tokens this process refuses.
    deleted: Arc<DeletedAccounts>,
    /// Hot reads; every write below announces what it changed before it answers.
    caches: Arc<EventCaches>,
    changes: Arc<Changes>,
    /// Where seats obtained, cancellations and moves are recorded, in their transactions.
    outbox: Outbox,
    /// The public base address, for the links in calendar files.
    public_url: String,
    /// Sign-ups, admitted in groups per event.
    admissions: Arc<Admissions>,
}

/// Where this module records its domain events.
const OUTBOX: &str = "events_outbox";

impl EventsService {
    /// The module on its database, asking `users` for names, refusing `deleted` accounts,
    /// its read caches kept current by `changes` (its own writes' and other modules').
    pub fn new(
        db: Db,
        users: Arc<dyn UsersApi>,
        deleted: Arc<DeletedAccounts>,
        changes: Arc<Changes>,
        cache: &CacheSettings,
        metrics: &CacheMetrics,
        public_url: String,
    ) -> Self {
        let caches = Arc::new(EventCaches::new(cache, metrics));
        changes.listen(caches.clone());
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            outbox: Outbox::new(db.clone(), OUTBOX),
            admissions: Admissions::new(db.clone(), changes.clone(), deleted.clone()),
            db,
            users,
            deleted,
            caches,
            changes,
        }
    }

    /// This module's outbox, for the process's relay.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Tells every cache (here and, split, in the other instances) that `id` changed.
    fn announce(&self, id: EventId, listed: bool) {
        self.changes
            .announce(Change::item(EVENT_CHANGES, id.as_uuid(), listed));
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
            .map_err(|e| match e {
                UsersApiError::Rejected(why) => EventsError::UsersRejected(why),
                UsersApiError::Unavailable(why) => EventsError::UsersUnavailable(why),
            })?;
        let Some(organizer) = names.into_iter().next() else {
            return Err(EventsError::AccountGone);
        };
        let event = domain::Event::new(caller.id, draft, at);
        let deleted = self.deleted.clone();
        let event = self
            .db
            .write(move |conn| {
                store::ensure_account_alive(conn, caller.id, &deleted)?;
                store::insert_event(conn, &event).map(|()| event)
            })
            .await?;
        self.announce(event.id, true);
        Ok(to_event(
            event,
            &HashMap::from([(organizer.id, organizer.name)]),
        ))
    }

    /// Indexes, 500 at a time, the text of events not indexed yet: stored before search
    /// existed, or by an older version during a rolling upgrade. How many it looked at.
    pub async fn index_unindexed(&self) -> Result<usize, EventsError> {
        const BATCH: usize = 500;
        let mut total = 0;
        loop {
            let looked_at = self
                .db
                .write(|conn| store::index_unindexed(conn, BATCH as i64))
                .await?;
            total += looked_at;
            if looked_at < BATCH {
                if total > 0 {
                    // Lists cached before now may have missed these events.
                    self.changes.announce(Change::Everything);
                }
                return Ok(total);
            }
        }
    }

    /// One event as an iCalendar file (`GET /api/events/{id}/calendar.ics`).
    pub async fn calendar(&self, id: EventId) -> Result<String, EventsError> {
        let event = self
            .db
            .run(move |conn| store::find_event(conn, id))
            .await?
            .ok_or(EventsError::EventNotFound)?;
        let entry = calendar::Entry {
            url: format!("{}/events/{}", self.public_url, event.id),
            event: &event,
            waiting: false,
        };
        Ok(calendar::render(&event.draft.title, &[entry], now()))
    }

    /// The share page of an event (`GET /events/{id}`): what a link preview shows (Open Graph)
    /// and a way into the web app.
    pub async fn share_page(&self, id: EventId) -> Result<SharePage, EventsError> {
        let (json, _) = self.event_json(id).await?;
        let event: Event = serde_json::from_slice(&json).map_err(|e| EventsError::CorruptRow {
            table: "events",
            key: id.to_string(),
            why: format!("its JSON does not read back: {e}"),
        })?;
        Ok(SharePage {
            url: format!("{}/events/{}", self.public_url, event.id),
            event,
        })
    }

    /// A new secret address for the caller's calendar feed; any earlier one stops working.
    pub async fn new_feed(&self, caller: AuthUser) -> Result<String, EventsError> {
        let secret = secret::new_secret();
        let hash = secret::digest(&secret);
        let deleted = self.deleted.clone();
        self.db
            .write(move |conn| {
                store::ensure_account_alive(conn, caller.id, &deleted)?;
                store::replace_feed(conn, caller.id, &hash, now())
            })
            .await?;
        Ok(format!("{}/api/calendar/{secret}.ics", self.public_url))
    }

    /// Ends the caller's calendar feed; whether there was one.
    pub async fn revoke_feed(&self, caller: AuthUser) -> Result<bool, EventsError> {
        self.db
            .write(move |conn| store::revoke_feed(conn, caller.id))
            .await
    }

    /// The calendar feed with secret `secret`: the events its owner registered for (the 500
    /// with the latest start). `None` for a secret that is no feed's.
    pub async fn feed(&self, secret: &str) -> Result<Option<String>, EventsError> {
        let hash = secret::digest(secret);
        let found = self
            .db
            .run(move |conn| {
                let Some(owner) = store::feed_owner(conn, &hash)? else {
                    return Ok(None);
                };
                store::registered_events(conn, owner, 500).map(Some)
            })
            .await?;
        let Some(registered) = found else {
            return Ok(None);
        };
        let entries: Vec<calendar::Entry<'_>> = registered
            .iter()
            .map(|(event, status)| calendar::Entry {
                url: format!("{}/events/{}", self.public_url, event.id),
                event,
                waiting: *status == RegistrationStatus::Waitlisted,
            })
            .collect();
        Ok(Some(calendar::render("rsvp: my events", &entries, now())))
    }

    /// One event as `GET /api/events/{id}` answers it (JSON), cancelled ones included, with what
    /// it depends on unless it misses its organiser's name.
    pub async fn event_json(&self, id: EventId) -> Result<(Bytes, Option<CacheTags>), EventsError> {
        let tags = || CacheTags(vec![item_tag(id), Tag::any_item(PROFILE_CHANGES)]);
        if let Some(json) = self.caches.details.get(&id) {
            return Ok((json, Some(tags())));
        }
        let (mut rendered, complete) = self.render_events(vec![id]).await?;
        let json = rendered.remove(&id).ok_or(EventsError::EventNotFound)?;
        Ok((json, complete.then(tags)))
    }

    /// A page of events matching `filter`, by start time, then id, as `GET /api/events`
    /// answers it (JSON), with what it depends on unless it is relative to now (`when`) or
    /// misses a name.
    pub async fn list_json(
        &self,
        filter: EventFilter,
        page: PageRequest,
    ) -> Result<(Arc<Encodings>, Option<CacheTags>), EventsError> {
        let timeless = filter.when == When::All;
        let key = ListKey::new(filter, page);
        let Some(listed) = self.caches.lists.get(&key) else {
            return self.list_uncached(key, timeless).await;
        };
        let mut rendered = HashMap::with_capacity(listed.ids.len());
        let mut missing = Vec::new();
        for id in &listed.ids {
            match self.caches.details.get(id) {
                Some(json) => drop(rendered.insert(*id, json)),
                None => missing.push(*id),
            }
        }
        let mut complete = true;
        if !missing.is_empty() {
            let (found, all_named) = self.render_events(missing).await?;
            rendered.extend(found);
            complete = all_named;
        }
        // An id without an event (none is ever deleted, so this can not happen today) is
        // left out rather than failing the page.
        let items = listed.ids.iter().filter_map(|id| rendered.remove(id));
        let tags = (timeless && complete).then(|| list_tags(&listed.ids));
        Ok((listed.body(items.collect()), tags))
    }

    /// A list page from the database; fills the list cache and the details of its events.
    async fn list_uncached(
        &self,
        key: ListKey,
        timeless: bool,
    ) -> Result<(Arc<Encodings>, Option<CacheTags>), EventsError> {
        let list_ticket = self.caches.lists.ticket(&key);
        let details_ticket = self.caches.details.bulk_ticket();
        let (filter, page) = (key.filter.clone(), key.page);
        let events = self
            .db
            .run(move |conn| store::list_events(conn, &filter, page))
            .await?;
        let organizers: Vec<UserId> = events.iter().map(|e| e.organizer).collect();
        let (names, complete) = self.names(&organizers).await;
        let page = into_page(events, page, store::cursor_by_start, |event| {
            (event.id, render(event, &names))
        });
        if complete {
            for (id, json) in &page.items {
                self.caches
                    .details
                    .fill_bulk(details_ticket, *id, json.clone());
            }
        }
        let listed = ListedPage::new(
            page.items.iter().map(|(id, _)| *id).collect(),
            page.next_cursor.clone(),
        );
        let body = listed.body(page.items.into_iter().map(|(_, json)| json).collect());
        let tags = (timeless && complete).then(|| list_tags(&listed.ids));
        if complete {
            self.caches.lists.fill(list_ticket, key, Arc::new(listed));
        }
        Ok((body, tags))
    }

    /// The events `ids` rendered as JSON, and whether every organiser's name was known (only
    /// then are they cached).
    async fn render_events(
        &self,
        ids: Vec<EventId>,
    ) -> Result<(HashMap<EventId, Bytes>, bool), EventsError> {
        let tickets: HashMap<EventId, Ticket> = ids
            .iter()
            .map(|id| (*id, self.caches.details.ticket(id)))
            .collect();
        let events = self
            .db
            .run(move |conn| store::find_events(conn, &ids))
            .await?;
        let organizers: Vec<UserId> = events.iter().map(|e| e.organizer).collect();
        let (names, complete) = self.names(&organizers).await;
        let rendered = events
            .into_iter()
            .map(|event| {
                let id = event.id;
                let json = render(event, &names);
                if complete {
                    self.caches.details.fill(tickets[&id], id, json.clone());
                }
                (id, json)
            })
            .collect();
        Ok((rendered, complete))
    }

    /// Revises an event (organiser or admin); a larger capacity seats waitlisted people at once.
    pub async fn update(
        &self,
        caller: AuthUser,
        id: EventId,
        patch: EventPatch,
    ) -> Result<Event, EventsError> {
        let (deleted, outbox) = (self.deleted.clone(), self.outbox.clone());
        let event = self
            .db
            .write(move |conn| {
                store::ensure_account_alive(conn, caller.id, &deleted)?;
                let mut event = locked_for(conn, id, &caller)?;
                let before = summary(&event);
                let indexed_before = (search::indexed_text(&event.draft), event.draft.starts_at);
                event.revise(patch, now())?;
                // A larger capacity seats waitlisted people now, not at the next cancellation.
                promote_waitlisted(conn, &outbox, &mut event)?;
                store::save_event(conn, &event)?;
                let indexed = (search::indexed_text(&event.draft), event.draft.starts_at);
                if indexed != indexed_before {
                    store::save_text(conn, event.id, indexed_before.1, (&indexed.0, indexed.1))?;
                }
                let after = summary(&event);
                // A new zone moves the local time people were told, as a new instant does.
                let time_changed = (before.starts_at, before.ends_at, &before.time_zone)
                    != (after.starts_at, after.ends_at, &after.time_zone);
                let place_changed = before.location != after.location;
                if time_changed || place_changed {
                    record_for_attendees(&outbox, conn, event.id, EVENT_CHANGED, |attendees| {
                        EventChanged {
                            event: after.clone(),
                            attendees,
                            time_changed,
                            place_changed,
                        }
                    })?;
                }
                Ok::<_, EventsError>(event)
            })
            .await?;
        self.outbox.wake();
        self.announce(id, true);
        let (names, _) = self.names(&[event.organizer]).await;
        Ok(to_event(event, &names))
    }

    /// Cancels the event; cancelling a cancelled event again changes nothing.
    pub async fn cancel(&self, caller: AuthUser, id: EventId) -> Result<(), EventsError> {
        let (deleted, outbox) = (self.deleted.clone(), self.outbox.clone());
        let changed = self
            .db
            .write(move |conn| {
                store::ensure_account_alive(conn, caller.id, &deleted)?;
                let mut event = locked_for(conn, id, &caller)?;
                let changed = event.cancel(now());
                if changed {
                    store::save_event(conn, &event)?;
                    record_cancellation(&outbox, conn, &event)?;
                }
                Ok::<_, EventsError>(changed)
            })
            .await?;
        if changed {
            self.outbox.wake();
            self.announce(id, true);
        }
        Ok(())
    }

    /// Registers the caller: a seat while one is free, else a place on the waitlist. With the
    /// sign-ups for the same event that arrive meanwhile, in one statement on PostgreSQL (more
    /// only to say why it refused) and one short write transaction on SQLite.
    pub async fn register(
        &self,
        caller: AuthUser,
        event_id: EventId,
    ) -> Result<Registration, EventsError> {
        if self.deleted.contains(caller.id.as_uuid()) {
            return Err(EventsError::AccountGone);
        }
        let admitted = self.admissions.admit(event_id, caller.id).await;
        // Announced by the group's own task, which is not this request's (also when the group
        // failed: it may have failed after its statement committed).
        note(&Change::item(EVENT_CHANGES, event_id.as_uuid(), false));
        let (registration, position) = admitted?;
        Ok(to_registration(&registration, position))
    }

    /// Withdraws the caller; a freed seat goes to the longest-waiting person in the same
    /// transaction: one statement on PostgreSQL unless the event changed after the statement's
    /// snapshot (then a transaction that locks first).
    pub async fn unregister(&self, caller: AuthUser, event_id: EventId) -> Result<(), EventsError> {
        let outbox = self.outbox.clone();
        self.db
            .run(move |conn| {
                if let DbConnection::Postgres(pg) = conn {
                    match store::withdraw_at_once(pg, event_id, caller.id, now(), SEAT_OBTAINED)? {
                        Withdrawal::Done { promoted } => {
                            for user in promoted {
                                tracing::info!(%event_id, user_id = %user, "promoted from waitlist");
                            }
                            return Ok(());
                        }
                        Withdrawal::NoSuchEvent => return Err(EventsError::EventNotFound),
                        Withdrawal::NotRegistered => {
                            return Err(EventsError::RegistrationNotFound);
                        }
                        Withdrawal::Stale => {}
                    }
                }
                write_transaction(conn, |conn| {
                    let mut event =
                        store::lock_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                    if !release_registration(conn, &outbox, &mut event, caller.id)? {
                        return Err(EventsError::RegistrationNotFound);
                    }
                    Ok(())
                })
            })
            .await?;
        self.outbox.wake();
        self.announce(event_id, false);
        Ok(())
    }

    /// A page of an event's registrations, for its organiser or an admin, as
    /// `GET /api/events/{id}/registrations` answers it (JSON).
    pub async fn attendees_json(
        &self,
        caller: AuthUser,
        event_id: EventId,
        page: PageRequest,
    ) -> Result<Bytes, EventsError> {
        if let Some(cached) = self.caches.attendees.get(&event_id) {
            if !domain::may_manage(cached.organizer, caller.id, caller.is_admin()) {
                return Err(EventsError::NotOrganizer);
            }
            if let Some(json) = cached.pages.get(&page) {
                return Ok(json.clone());
            }
        }
        let ticket = self.caches.attendees.ticket(&event_id);
        let (organizer, registrations) = self
            .db
            .run(move |conn| {
                let event = store::find_event(conn, event_id)?.ok_or(EventsError::EventNotFound)?;
                ensure_organizer(&caller, &event)?;
                let of = RegistrationsOf::Event(event_id);
                Ok::<_, EventsError>((event.organizer, store::registrations_page(conn, of, page)?))
            })
            .await?;
        let users: Vec<UserId> = registrations.iter().map(|r| r.user).collect();
        let (names, complete) = self.names(&users).await;
        let attendees = into_page(registrations, page, store::cursor_by_user, |registration| {
            Attendee {
                user: person(registration.user, &names),
                status: registration.status,
                created_at: registration.created_at,
            }
        });
        let json = Bytes::from(serde_json::to_vec(&attendees).expect("a page always serializes"));
        if complete {
            self.caches.attendees.update(ticket, event_id, |cached| {
                let mut pages = cached.map(|c| c.pages.clone()).unwrap_or_default();
                pages.insert(page, json.clone());
                Arc::new(AttendeePages { organizer, pages })
            });
        }
        Ok(json)
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
        let (names, _) = self.names(&organizers).await;
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
        let outbox = self.outbox.clone();
        let changed = self
            .db
            .write(move |conn| {
                // First: registrations and events being written for the account commit before
                // the cascade looks for them, and later ones see the record below and refuse.
                let at = now();
                store::lock_account_for_deletion(conn, user, at)?;
                let mut changed = Vec::new();
                if !INBOX.first_time(conn, message_id, USER_DELETED, at)? {
                    return Ok(None);
                }
                store::record_deleted_user(conn, user, deleted_at)?;
                store::revoke_feed(conn, user)?;
                let mut ids = store::events_registered_by(conn, user)?;
                ids.extend(store::scheduled_events_of(conn, user)?);
                // Lock in one global order (by id) so concurrent cascades can not deadlock.
                ids.sort();
                ids.dedup();
                for id in ids {
                    let Some(mut event) = store::lock_event(conn, id)? else {
                        continue;
                    };
                    let released = release_registration(conn, &outbox, &mut event, user)?;
                    let cancelled = event.organizer == user && event.cancel(at);
                    if cancelled {
                        store::save_event(conn, &event)?;
                        record_cancellation(&outbox, conn, &event)?;
                    }
                    if released || cancelled {
                        changed.push((id, cancelled));
                    }
                }
                Ok::<_, EventsError>(Some(changed))
            })
            .await?;
        let Some(changed) = changed else {
            return Ok(false);
        };
        self.outbox.wake();
        for (id, listed) in changed {
            self.announce(id, listed);
        }
        Ok(true)
    }

    /// Display names of `ids`, from the cache or one batched call, and whether all of them
    /// are known. Reads stay up when the users module is down: the names are then simply
    /// missing (`null`), and nothing rendered with them is cached.
    async fn names(&self, ids: &[UserId]) -> (HashMap<Uuid, String>, bool) {
        let mut unique: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut names = HashMap::with_capacity(unique.len());
        let mut missing = Vec::new();
        for id in unique {
            match self.caches.names.get(&id) {
                Some(CachedName(name)) => {
                    if let Some(name) = name {
                        names.insert(id, name.to_string());
                    }
                }
                None => missing.push((id, self.caches.names.ticket(&id))),
            }
        }
        if missing.is_empty() {
            return (names, true);
        }
        let asked: Vec<Uuid> = missing.iter().map(|(id, _)| *id).collect();
        match self.users.public_profiles(&asked).await {
            Ok(profiles) => {
                let mut found: HashMap<Uuid, String> =
                    profiles.into_iter().map(|p| (p.id, p.name)).collect();
                for (id, ticket) in missing {
                    let name = found.remove(&id);
                    let cached = CachedName(name.as_deref().map(Arc::from));
                    self.caches.names.fill(ticket, id, cached);
                    if let Some(name) = name {
                        names.insert(id, name);
                    }
                }
                (names, true)
            }
            Err(UsersApiError::Rejected(why)) => {
                tracing::error!(%why, "the users module refuses this module's calls (check \
                    service.credential); answering without names");
                (names, false)
            }
            Err(err) => {
                tracing::warn!(error = %err, "names unavailable; answering without them");
                (names, false)
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
    outbox: &Outbox,
    event: &mut domain::Event,
    user: UserId,
) -> Result<bool, EventsError> {
    let Some(registration) = store::find_registration(conn, event.id, user)? else {
        return Ok(false);
    };
    store::delete_registration(conn, event.id, user)?;
    event.release(registration.status, now());
    promote_waitlisted(conn, outbox, event)?;
    store::save_seats(conn, event)?;
    Ok(true)
}

/// Confirms the longest-waiting registrations while seats are free, telling each (a
/// `registration.promoted` domain event).
fn promote_waitlisted(
    conn: &mut DbConnection,
    outbox: &Outbox,
    event: &mut domain::Event,
) -> Result<(), EventsError> {
    let n = event.seats_to_fill();
    if n == 0 {
        return Ok(());
    }
    for waiting in store::oldest_waitlisted(conn, event.id, i64::from(n))? {
        store::confirm(conn, &waiting)?;
        event.promote_one();
        let seat = SeatObtained {
            event: summary(event),
            user_id: waiting.user.as_uuid(),
        };
        record(outbox, conn, SEAT_OBTAINED, &seat)?;
        tracing::info!(event_id = %event.id, user_id = %waiting.user, "promoted from waitlist");
    }
    Ok(())
}

/// An event as its share page shows it.
pub struct SharePage {
    pub event: Event,
    /// The page's own public address.
    pub url: String,
}

/// What a domain event says of `event`.
fn summary(event: &domain::Event) -> EventSummary {
    EventSummary {
        id: event.id.as_uuid(),
        title: event.draft.title.clone(),
        starts_at: event.draft.starts_at,
        ends_at: event.draft.ends_at,
        location: event.draft.location.clone(),
        time_zone: event.draft.time_zone.name().to_owned(),
    }
}

/// Records a domain event of `topic` in the caller's transaction.
fn record(
    outbox: &Outbox,
    conn: &mut DbConnection,
    topic: &str,
    payload: &impl serde::Serialize,
) -> Result<(), EventsError> {
    let event = DomainEvent {
        id: Uuid::now_v7(),
        topic: topic.to_owned(),
        payload: serde_json::to_value(payload).map_err(|e| EventsError::CorruptRow {
            table: OUTBOX,
            key: topic.to_owned(),
            why: e.to_string(),
        })?,
        occurred_at: now(),
    };
    Ok(outbox.record(conn, &event)?)
}

/// Records `topic` for everyone registered for `event`, [`ATTENDEES_PER_EVENT`] people a time.
fn record_for_attendees<T: serde::Serialize>(
    outbox: &Outbox,
    conn: &mut DbConnection,
    event: EventId,
    topic: &str,
    payload: impl Fn(Vec<Uuid>) -> T,
) -> Result<(), EventsError> {
    let attendees: Vec<Uuid> = store::registered_users(conn, event)?
        .into_iter()
        .map(UserId::as_uuid)
        .collect();
    for chunk in attendees.chunks(ATTENDEES_PER_EVENT) {
        record(outbox, conn, topic, &payload(chunk.to_vec()))?;
    }
    Ok(())
}

/// Tells everyone registered for `event` that it was cancelled.
fn record_cancellation(
    outbox: &Outbox,
    conn: &mut DbConnection,
    event: &domain::Event,
) -> Result<(), EventsError> {
    let about = summary(event);
    record_for_attendees(outbox, conn, event.id, EVENT_CANCELLED, |attendees| {
        EventCancelled {
            event: about.clone(),
            attendees,
        }
    })
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

/// The event's JSON as the API shows it.
/// What one event's JSON depends on besides organisers' names.
fn item_tag(id: EventId) -> Tag {
    Tag::item(EVENT_CHANGES, id.as_uuid())
}

/// What a list page depends on: which events the list holds, each of its events, their
/// organisers' names.
fn list_tags(ids: &[EventId]) -> CacheTags {
    let mut tags = Vec::with_capacity(ids.len() + 2);
    tags.extend([Tag::lists(EVENT_CHANGES), Tag::any_item(PROFILE_CHANGES)]);
    tags.extend(ids.iter().map(|id| item_tag(*id)));
    CacheTags(tags)
}

fn render(event: domain::Event, names: &HashMap<Uuid, String>) -> Bytes {
    let json = serde_json::to_vec(&to_event(event, names)).expect("an event always serializes");
    Bytes::from(json)
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
        time_zone: event.draft.time_zone.name().to_owned(),
        starts_at: event.draft.starts_at,
        ends_at: event.draft.ends_at,
        capacity: event.draft.capacity,
        created_at: event.created_at,
        updated_at: event.updated_at,
    }
}

#[async_trait]
impl EventsApi for EventsService {
    async fn seats_starting_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Seats>, EventsApiError> {
        let found = self
            .db
            .run(move |conn| store::seats_starting_between(conn, from, to))
            .await
            .map_err(|e| EventsApiError::Unavailable(e.to_string()))?;
        Ok(found
            .into_iter()
            .map(|(event, users)| Seats {
                event: summary(&event),
                users: users.into_iter().map(UserId::as_uuid).collect(),
            })
            .collect())
    }
}

/// The ids of the domain events this module handled.
const INBOX: Inbox = Inbox("events_inbox");

/// Consumes `user.deleted` for the events module.
pub struct UserDeletedHandler(pub Arc<EventsService>);

#[async_trait]
impl EventHandler for UserDeletedHandler {
    fn topics(&self) -> &'static [&'static str] {
        &[USER_DELETED]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        let payload = UserDeleted::from_event(event)?;
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
