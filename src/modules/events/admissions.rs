//! Sign-ups admitted in groups, per event (what databases call a group commit): while one
//! group's statement runs, the sign-ups that arrive for the same event wait, then go together in
//! the next one. A crowd on one event then takes one turn of the event's row lock, one statement
//! and one commit per group instead of per person; a lone sign-up goes at once, as before.
//!
//! Arrival order holds: each event's queue is in the order sign-ups reached this process, and a
//! group's statement gives seats and waitlist places in its order (`store::admit_group`). Every
//! decision is still the database's, so several instances, each grouping its own arrivals,
//! share one truth. A group runs in a task of its own: a sign-up whose client went away is
//! still answered, and its change still announced to the caches.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;
use tracing::Instrument;

use super::{
    EVENT_CHANGES,
    domain::EventId,
    error::EventsError,
    store::{self, Admitted},
};
use crate::platform::{
    auth::DeletedAccounts,
    changes::{Change, Changes},
    db::{Db, DbConnection, DbError, is_unique_violation},
    ids::UserId,
    now,
    problem::Problem,
};

/// Most people in one group: the statement's array and its answer stay small.
const MOST_IN_A_GROUP: usize = 256;

/// How often a sign-up is tried again when it was refused for a reason gone by the time it was
/// asked (a registration withdrawn in between, say).
const ATTEMPTS: usize = 3;

/// The sign-ups waiting for their event's next group.
pub struct Admissions {
    db: Db,
    changes: Arc<Changes>,
    /// Checked again as each group goes: an account may be deleted while its sign-up waits.
    deleted: Arc<DeletedAccounts>,
    /// An event has an entry while a task admits its groups; the entry holds who waits.
    queues: Mutex<HashMap<EventId, Vec<Waiting>>>,
}

struct Waiting {
    user: UserId,
    answer: oneshot::Sender<Result<Admitted, EventsError>>,
}

impl Admissions {
    /// Sign-ups on `db`, each admission announced on `changes`, `deleted` accounts refused.
    pub fn new(db: Db, changes: Arc<Changes>, deleted: Arc<DeletedAccounts>) -> Arc<Self> {
        Arc::new(Self {
            db,
            changes,
            deleted,
            queues: Mutex::default(),
        })
    }

    /// Signs `user` up for `event` with the next group: a seat while one is free, else the end
    /// of the waitlist, or why not.
    pub async fn admit(
        self: &Arc<Self>,
        event: EventId,
        user: UserId,
    ) -> Result<Admitted, EventsError> {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting { user, answer };
        let first = match self.queues().entry(event) {
            Entry::Occupied(mut queue) => {
                queue.get_mut().push(waiting);
                false
            }
            Entry::Vacant(queue) => {
                queue.insert(vec![waiting]);
                true
            }
        };
        if first {
            // The task serves many requests: its span is its own, linked to the one that began it.
            let span = tracing::info_span!(parent: None, "admissions", event_id = %event);
            span.follows_from(tracing::Span::current());
            tokio::spawn(self.clone().admit_groups(event).instrument(span));
        }
        answered.await.unwrap_or_else(|_| {
            // Only a panic in the group's task drops an answer unsent.
            Err(DbError::Task("the sign-up's group was not admitted".into()).into())
        })
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Vec<Waiting>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits `event`'s queue group by group until nobody waits.
    async fn admit_groups(self: Arc<Self>, event: EventId) {
        let mut running = Running {
            admissions: &self,
            event,
            done: false,
        };
        loop {
            let group = {
                let mut queues = self.queues();
                let queue = queues.entry(event).or_default();
                if queue.is_empty() {
                    queues.remove(&event);
                    running.done = true;
                    return;
                }
                next_group(queue)
            };
            let users: Vec<UserId> = group.iter().map(|w| w.user).collect();
            let deleted = self.deleted.clone();
            let outcomes = self
                .db
                .run(move |conn| admit_all(conn, event, &users, &deleted))
                .await;
            // Before anyone is answered; also when the group failed, since it may have failed
            // after its statement committed (an extra invalidation costs one read).
            if outcomes
                .as_ref()
                .map_or(true, |outcomes| outcomes.iter().any(Result::is_ok))
            {
                self.changes
                    .announce(Change::item(EVENT_CHANGES, event.as_uuid(), false));
            }
            match outcomes {
                Ok(outcomes) => {
                    for (waiting, outcome) in group.into_iter().zip(outcomes) {
                        // A caller that went away is no longer listening.
                        let _ = waiting.answer.send(outcome);
                    }
                }
                Err(failed) => {
                    for waiting in group {
                        let _ = waiting.answer.send(Err(for_each(&failed)));
                    }
                }
            }
        }
    }
}

/// Removes an event's entry when its task ends by a panic, so its next sign-up starts another
/// (those waiting are answered with an error as their answers drop).
struct Running<'a> {
    admissions: &'a Admissions,
    event: EventId,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.admissions.queues().remove(&self.event);
        }
    }
}

/// The first of `queue` (distinct people, at most [`MOST_IN_A_GROUP`]), in arrival order; a
/// second sign-up of someone already in the group waits for the next one.
fn next_group(queue: &mut Vec<Waiting>) -> Vec<Waiting> {
    let mut people = HashSet::new();
    let (group, rest) = std::mem::take(queue)
        .into_iter()
        .partition(|w| people.len() < MOST_IN_A_GROUP && people.insert(w.user));
    *queue = rest;
    group
}

/// A failure of a whole group, as each of its people is answered.
fn for_each(failed: &EventsError) -> EventsError {
    match failed {
        EventsError::Db(db) if db.is_unavailable() => {
            Problem::unavailable("the events module's database is unavailable", 5).into()
        }
        other => DbError::Task(other.to_string()).into(),
    }
}

/// Admits `users` (distinct, in arrival order) as one group, then says why it refused whom it
/// refused. Accounts deleted meanwhile (while they waited their turn) are refused here, without a
/// statement. A group that failed because someone registered meanwhile through another
/// instance goes once more (its new statement sees that registration), then one by one. `Err`
/// when the database failed the whole group: nobody was admitted, and the connection is checked
/// before its next use.
pub(super) fn admit_all(
    conn: &mut DbConnection,
    event: EventId,
    users: &[UserId],
    deleted: &DeletedAccounts,
) -> Result<Vec<Result<Admitted, EventsError>>, EventsError> {
    let gone: Vec<bool> = users
        .iter()
        .map(|user| deleted.contains(user.as_uuid()))
        .collect();
    let alive: Vec<UserId> = users
        .iter()
        .zip(&gone)
        .filter_map(|(&user, &gone)| (!gone).then_some(user))
        .collect();
    if alive.is_empty() {
        return Ok(gone.iter().map(|_| Err(EventsError::AccountGone)).collect());
    }
    let at = now();
    let mut attempt = store::admit_group(conn, event, &alive, at);
    if attempt.as_ref().is_err_and(is_duplicate) {
        attempt = store::admit_group(conn, event, &alive, at);
    }
    let mut outcomes = match attempt {
        Ok(placed) => alive
            .iter()
            .zip(placed)
            .map(|(&user, placed)| match placed {
                Some(admitted) => Ok(admitted),
                None => match store::why_not_admitted(conn, event, user, at) {
                    Ok(Some(why)) => Err(why),
                    Ok(None) => admit_one(conn, event, user),
                    Err(e) => Err(e),
                },
            })
            .collect::<Vec<_>>(),
        Err(e) if is_duplicate(&e) => alive
            .iter()
            .map(|&user| admit_one(conn, event, user))
            .collect(),
        Err(e) => return Err(e),
    }
    .into_iter();
    Ok(gone
        .iter()
        .map(|&gone| match gone {
            true => Err(EventsError::AccountGone),
            false => outcomes.next().expect("an outcome for everyone alive"),
        })
        .collect())
}

/// A registration made meanwhile (through another instance) failed the statement.
fn is_duplicate(error: &EventsError) -> bool {
    matches!(error, EventsError::Db(DbError::Query(e)) if is_unique_violation(e))
}

/// One sign-up, a group of one, and why it was refused when it was.
fn admit_one(
    conn: &mut DbConnection,
    event: EventId,
    user: UserId,
) -> Result<Admitted, EventsError> {
    for _ in 0..ATTEMPTS {
        let at = now();
        match store::admit_group(conn, event, &[user], at) {
            Ok(placed) => {
                if let Some(Some(admitted)) = placed.into_iter().next() {
                    return Ok(admitted);
                }
            }
            Err(e) if is_duplicate(&e) => return Err(EventsError::AlreadyRegistered),
            Err(e) => return Err(e),
        }
        if let Some(why) = store::why_not_admitted(conn, event, user, at)? {
            return Err(why);
        }
    }
    // Refused each time for a reason gone when asked: only a registration of the caller's own,
    // withdrawn and made again in between, can do that.
    Err(EventsError::AlreadyRegistered)
}
