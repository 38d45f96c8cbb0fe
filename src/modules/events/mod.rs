//! The events module: events, registrations, capacity and the waitlist.
//!
//! Public interface: the DTOs, the routes ([`configure`]), the `user.deleted` consumer and the
//! migrations. It knows the users module only through [`crate::modules::users::UsersApi`] and
//! its domain events.

mod admissions;
mod cache;
mod calendar;
mod domain;
mod error;
mod handlers;
#[cfg(test)]
mod list_plans;
mod module;
mod schema;
mod search;
mod service;
mod store;
#[cfg(test)]
mod write_statements;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use domain::EventId;
pub use error::EventsError;
pub use handlers::{ApiDoc, configure};
pub use module::MODULE;
pub use service::{EventsService, UserDeletedHandler};

use crate::platform::db::ModuleMigrations;

/// The kind of [`crate::platform::changes::Change`] an event's write announces.
pub const EVENT_CHANGES: &str = "event";

/// Someone as other people see them. `name` is `null` when the account was deleted or the
/// users module could not be asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Person {
    pub id: Uuid,
    pub name: Option<String>,
}

/// Whether an event still takes place.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Scheduled,
    Cancelled,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub category: Option<String>,
    /// The IANA time zone where it takes place; `starts_at` and `ends_at` stay UTC instants.
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i32,
    pub seats_taken: i32,
    pub waitlist_length: i32,
    pub status: EventStatus,
    pub organizer: Person,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a registration stands: the one status type, in the API and in the store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationStatus {
    Confirmed,
    Waitlisted,
}

impl RegistrationStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Waitlisted => "waitlisted",
        }
    }
}

impl std::str::FromStr for RegistrationStatus {
    type Err = String;

    /// Only the stored names; anything else is an error, never a guess.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "confirmed" => Ok(Self::Confirmed),
            "waitlisted" => Ok(Self::Waitlisted),
            other => Err(format!("unknown registration status {other:?}")),
        }
    }
}

/// A registration as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub status: RegistrationStatus,
    /// The 1-based place in the waitlist while waitlisted, `null` otherwise.
    #[schema(minimum = 1)]
    pub position: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// One line of an event's attendee list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attendee {
    pub user: Person,
    pub status: RegistrationStatus,
    pub created_at: DateTime<Utc>,
}

/// One of the caller's registrations, with its event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyRegistration {
    pub event: Event,
    pub status: RegistrationStatus,
    /// The 1-based place in the waitlist while waitlisted, `null` otherwise.
    #[schema(minimum = 1)]
    pub position: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// Filters of the public event list (`GET /api/events`), all optional; `cancelled` lists the
/// cancelled events instead of the scheduled ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EventFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub organizer_id: Option<Uuid>,
    pub category: Option<String>,
    pub location: Option<String>,
    /// The reduced words of a free-text query, each to begin a word of the event.
    pub q: Option<Vec<String>>,
    pub when: When,
    pub cancelled: bool,
}

/// Which events of the list, by their start (`when`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum When {
    /// Every one, earliest first (the default).
    #[default]
    All,
    /// Those not started yet, earliest first.
    Upcoming,
    /// Those that started, newest first.
    Past,
}

/// An event as a domain event names it: enough to tell people about it without asking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventSummary {
    pub id: Uuid,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub location: Option<String>,
    /// The IANA zone of its venue (`UTC` in messages written before events had one).
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// What other modules may ask of the events module. In process it is [`EventsService`];
/// elsewhere `EventsApiRemote`, written by the kit from this trait.
#[modkit::interface(path = "/internal/events")]
#[async_trait]
pub trait EventsApi: Send + Sync {
    /// Scheduled events starting at or after `from` and before `to`, each with the people who
    /// have a seat at it (for reminders).
    #[idempotent]
    async fn seats_starting_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Seats>, EventsApiError>;
}

/// An event and the people who have a seat at it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seats {
    pub event: EventSummary,
    pub users: Vec<Uuid>,
}

modkit::interface_error!(
    /// Why an [`EventsApi`] call failed.
    pub EventsApiError, "events module"
);

/// Topic of [`SeatObtained`].
pub const SEAT_OBTAINED: &str = "registration.promoted";

/// Someone on the waitlist got a seat (a seat was freed, or the capacity raised).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeatObtained {
    pub event: EventSummary,
    pub user_id: Uuid,
}

/// Topic of [`EventCancelled`].
pub const EVENT_CANCELLED: &str = "event.cancelled";

/// An event was cancelled; `attendees` are the people registered then (seated or waiting), at
/// most [`ATTENDEES_PER_EVENT`] per domain event (a large event sends several).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventCancelled {
    pub event: EventSummary,
    pub attendees: Vec<Uuid>,
}

/// Topic of [`EventChanged`].
pub const EVENT_CHANGED: &str = "event.changed";

/// An event's time or place changed; `attendees` as in [`EventCancelled`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventChanged {
    pub event: EventSummary,
    pub attendees: Vec<Uuid>,
    pub time_changed: bool,
    pub place_changed: bool,
}

/// How many attendees one domain event names at most (a broker message stays small).
pub const ATTENDEES_PER_EVENT: usize = 500;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/events/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/events/postgres");

/// The events module's tables, for both backends.
pub static MIGRATIONS: ModuleMigrations = ModuleMigrations {
    module: "events",
    tables: &[
        "events",
        "registrations",
        "events_inbox",
        "events_outbox",
        "events_deleted_users",
    ],
    sqlite: || SQLITE_MIGRATIONS,
    postgres: || POSTGRES_MIGRATIONS,
};

#[cfg(test)]
mod tests {
    use super::RegistrationStatus;

    #[test]
    fn registration_statuses_read_back_exactly_what_was_stored() {
        for status in [
            RegistrationStatus::Confirmed,
            RegistrationStatus::Waitlisted,
        ] {
            assert_eq!(status.as_str().parse::<RegistrationStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
        assert_eq!(RegistrationStatus::Confirmed.as_str(), "confirmed");
        assert_eq!(RegistrationStatus::Waitlisted.as_str(), "waitlisted");
        for unknown in ["", "Confirmed", "cancelled", "waitlisted "] {
            assert!(
                unknown.parse::<RegistrationStatus>().is_err(),
                "{unknown:?}"
            );
        }
    }
}
