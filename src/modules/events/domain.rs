//! The events module's rules, free of I/O: what a valid event is, how a patch applies, and the
//! event aggregate, whose methods are the only way seats, waitlist and status change: who gets a
//! seat, who waits, and how many waitlisted people a freed or added seat promotes.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::RegistrationStatus;
use crate::platform::{
    ids::UserId,
    instant,
    problem::FieldError,
    text::{Lines, check_text},
    zone::Zone,
};

pub const MAX_CAPACITY: i64 = 100_000;

/// A validated event's editable fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub title: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub category: Option<String>,
    /// Where it takes place; its times are shown in this zone.
    pub time_zone: Zone,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i32,
}

/// The body of a create request, as received (`POST /api/events`); [`EventDraft::create`]
/// decides whether it is a valid event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = CreateEventRequest)]
pub struct EventInput {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    #[schema(max_length = 200)]
    pub location: Option<String>,
    #[schema(max_length = 50)]
    pub category: Option<String>,
    /// The IANA time zone where it takes place (`Europe/Berlin`); `UTC` when left out.
    #[schema(example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    /// Must be in the future.
    #[serde(deserialize_with = "instant::required")]
    pub starts_at: DateTime<Utc>,
    /// Must be after `starts_at`.
    #[serde(deserialize_with = "instant::required")]
    pub ends_at: DateTime<Utc>,
    #[schema(minimum = 1, maximum = 100000)]
    pub capacity: i64,
}

/// The body of an update (`PATCH /api/events/{id}`): any of the create fields; `null` clears
/// `description`, `location` or `category` (`Some(None)`), a field left out stays (`None`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateEventRequest)]
pub struct EventPatch {
    pub title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<String>>,
    /// The IANA time zone where it takes place.
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "instant::optional")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "instant::optional")]
    pub ends_at: Option<DateTime<Utc>>,
    pub capacity: Option<i64>,
}

/// Tells a field sent as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl EventDraft {
    /// Validates a new event; it must start in the future.
    pub fn create(input: EventInput, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if input.starts_at <= now {
            errors.push(FieldError::new("starts_at", "must be in the future"));
        }
        let draft = Self::check(
            &mut errors,
            input.title,
            input.description,
            input.location,
            input.category,
            input.time_zone.as_deref(),
            input.starts_at,
            input.ends_at,
            input.capacity,
        );
        if errors.is_empty() {
            Ok(draft)
        } else {
            Err(errors)
        }
    }

    /// Applies `patch`; a new `starts_at` must be in the future, the result must be valid.
    pub fn apply(&self, patch: EventPatch, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if patch.starts_at.is_some_and(|s| s <= now) {
            errors.push(FieldError::new("starts_at", "must be in the future"));
        }
        let draft = Self::check(
            &mut errors,
            patch.title.unwrap_or_else(|| self.title.clone()),
            patch
                .description
                .unwrap_or_else(|| self.description.clone()),
            patch.location.unwrap_or_else(|| self.location.clone()),
            patch.category.unwrap_or_else(|| self.category.clone()),
            Some(patch.time_zone.as_deref().unwrap_or(self.time_zone.name())),
            patch.starts_at.unwrap_or(self.starts_at),
            patch.ends_at.unwrap_or(self.ends_at),
            patch.capacity.unwrap_or(i64::from(self.capacity)),
        );
        if errors.is_empty() {
            Ok(draft)
        } else {
            Err(errors)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        errors: &mut Vec<FieldError>,
        title: String,
        description: Option<String>,
        location: Option<String>,
        category: Option<String>,
        time_zone: Option<&str>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        capacity: i64,
    ) -> Self {
        // Both databases keep microseconds; keep exactly what will be read back.
        let (starts_at, ends_at) = (starts_at.trunc_subsecs(6), ends_at.trunc_subsecs(6));
        let title = title.trim().to_owned();
        if !(1..=200).contains(&title.chars().count()) {
            errors.push(FieldError::new("title", "must be 1 to 200 characters"));
        } else if let Err(e) = check_text("title", &title, Lines::Single) {
            errors.push(e);
        }
        let description = optional_text(errors, "description", description, 10_000, Lines::Multi);
        let location = optional_text(errors, "location", location, 200, Lines::Single);
        let category = optional_text(errors, "category", category, 50, Lines::Single);
        let time_zone = match time_zone.map(str::trim) {
            None => Zone::utc(),
            Some(name) => Zone::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "time_zone",
                    "must be an IANA time zone, such as Europe/Berlin or UTC",
                ));
                Zone::utc()
            }),
        };
        if ends_at <= starts_at {
            errors.push(FieldError::new("ends_at", "must be after starts_at"));
        }
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            errors.push(FieldError::new(
                "capacity",
                format!("must be between 1 and {MAX_CAPACITY}"),
            ));
        }
        Self {
            title,
            description,
            location,
            category,
            time_zone,
            starts_at,
            ends_at,
            capacity: capacity.clamp(1, MAX_CAPACITY) as i32,
        }
    }
}

/// Trims; blank means absent.
fn optional_text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<String>,
    max: usize,
    lines: Lines,
) -> Option<String> {
    let value = value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())?;
    if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if let Err(e) = check_text(field, &value, lines) {
        errors.push(e);
    }
    Some(value)
}

/// The case-insensitive key the `category` and `location` filters compare.
pub fn filter_key(value: &str) -> String {
    value.trim().to_lowercase()
}

crate::uuid_id!(
    /// An event, as the events module issued it.
    EventId
);

/// An event: its fields and the state of its seats. Every change to seats, waitlist or status is
/// one of its methods, so the rules live here and the service only loads, calls and saves.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub organizer: UserId,
    pub(super) draft: EventDraft,
    seats_taken: i32,
    waitlist_length: i32,
    cancelled: bool,
    /// Raised by each change of time or place, and by the cancellation (a calendar's SEQUENCE).
    sequence: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A registration as the aggregate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub event: EventId,
    pub user: UserId,
    pub status: RegistrationStatus,
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// A new, scheduled event with no one registered.
    pub fn new(organizer: UserId, draft: EventDraft, now: DateTime<Utc>) -> Self {
        Self {
            id: EventId::generate(),
            organizer,
            draft,
            seats_taken: 0,
            waitlist_length: 0,
            cancelled: false,
            sequence: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// An event as stored; the store is the only caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn restore(
        id: EventId,
        organizer: UserId,
        draft: EventDraft,
        seats_taken: i32,
        waitlist_length: i32,
        cancelled: bool,
        sequence: i32,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            organizer,
            draft,
            seats_taken,
            waitlist_length,
            cancelled,
            sequence,
            created_at,
            updated_at,
        }
    }

    pub fn seats_taken(&self) -> i32 {
        self.seats_taken
    }

    pub fn waitlist_length(&self) -> i32 {
        self.waitlist_length
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    pub fn sequence(&self) -> i32 {
        self.sequence
    }

    /// Whether `user` may change it: its organiser or an admin.
    pub fn may_be_changed_by(&self, user: UserId, is_admin: bool) -> bool {
        may_manage(self.organizer, user, is_admin)
    }

    /// Applies `patch`. A cancelled event is not changed; capacity never drops below the seats
    /// taken. A larger capacity may leave seats to fill ([`Event::seats_to_fill`]).
    pub fn revise(&mut self, patch: EventPatch, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.cancelled {
            return Err(Refusal::EventCancelled);
        }
        let draft = self.draft.apply(patch, now).map_err(Refusal::Invalid)?;
        if draft.capacity < self.seats_taken {
            return Err(Refusal::CapacityBelowSeatsTaken {
                seats_taken: self.seats_taken,
            });
        }
        let old = &self.draft;
        let moved = (old.starts_at, old.ends_at, &old.time_zone, &old.location)
            != (
                draft.starts_at,
                draft.ends_at,
                &draft.time_zone,
                &draft.location,
            );
        if moved {
            self.sequence += 1;
        }
        self.draft = draft;
        self.updated_at = self.arrival(now);
        Ok(())
    }

    /// Cancels it; `false` when it already was.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> bool {
        if self.cancelled {
            return false;
        }
        self.cancelled = true;
        self.sequence += 1;
        self.updated_at = self.arrival(now);
        true
    }

    /// Whether registration is open at `now`: not cancelled, not started.
    pub fn ensure_open(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.cancelled {
            return Err(Refusal::RegistrationClosed("cancelled"));
        }
        if self.draft.starts_at <= now {
            return Err(Refusal::RegistrationClosed("already started"));
        }
        Ok(())
    }

    /// When a newcomer who came at `now` arrives: never before the event's last change, so
    /// that arrival times follow the order of admission (under the event's lock) even when the
    /// clocks of two instances disagree. Every change is stamped this way, so `updated_at` only
    /// grows.
    pub fn arrival(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.max(self.updated_at + chrono::Duration::microseconds(1))
    }

    /// Admits a newcomer at `at` (see [`Event::arrival`]): a seat while one is free, else the
    /// end of the waitlist. Returns the status and the waitlist position.
    pub fn admit(&mut self, at: DateTime<Utc>) -> Result<Admission, Refusal> {
        self.ensure_open(at)?;
        self.updated_at = at;
        // Nobody overtakes the waitlist (a free seat with people waiting is theirs).
        if self.seats_taken < self.draft.capacity && self.waitlist_length == 0 {
            self.seats_taken += 1;
            Ok(Admission::Confirmed)
        } else {
            self.waitlist_length += 1;
            Ok(Admission::Waitlisted {
                position: i64::from(self.waitlist_length),
            })
        }
    }

    /// A registration with `status` left: its seat or its waitlist place is free.
    pub fn release(&mut self, status: RegistrationStatus, now: DateTime<Utc>) {
        match status {
            RegistrationStatus::Confirmed => self.seats_taken -= 1,
            RegistrationStatus::Waitlisted => self.waitlist_length -= 1,
        }
        self.updated_at = self.arrival(now);
    }

    /// How many waitlisted registrations to confirm so that nobody waits beside a free seat.
    pub fn seats_to_fill(&self) -> i32 {
        (self.draft.capacity - self.seats_taken).clamp(0, self.waitlist_length.max(0))
    }

    /// The longest-waiting registration got a seat.
    pub fn promote_one(&mut self) {
        self.seats_taken += 1;
        self.waitlist_length -= 1;
    }
}

/// Whether `user` may manage (change, or see the attendees of) an event `organizer` organises:
/// its organiser or an admin.
pub fn may_manage(organizer: UserId, user: UserId, is_admin: bool) -> bool {
    is_admin || organizer == user
}

/// Why the event refused a change. Each becomes the matching `EventsError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The fields, revised, would not make a valid event.
    Invalid(Vec<FieldError>),
    EventCancelled,
    CapacityBelowSeatsTaken {
        seats_taken: i32,
    },
    /// Registration is closed: the event is cancelled or already started.
    RegistrationClosed(&'static str),
}

/// Where a newcomer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Confirmed,
    /// At this 1-based place in the waitlist.
    Waitlisted {
        position: i64,
    },
}

impl Admission {
    pub fn status(self) -> RegistrationStatus {
        match self {
            Admission::Confirmed => RegistrationStatus::Confirmed,
            Admission::Waitlisted { .. } => RegistrationStatus::Waitlisted,
        }
    }

    pub fn position(self) -> Option<i64> {
        match self {
            Admission::Confirmed => None,
            Admission::Waitlisted { position } => Some(position),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn input(now: DateTime<Utc>) -> EventInput {
        EventInput {
            title: "  Rust meetup ".into(),
            description: Some("  ".into()),
            location: Some("Berlin".into()),
            category: None,
            time_zone: None,
            starts_at: now + Duration::days(1),
            ends_at: now + Duration::days(1) + Duration::hours(2),
            capacity: 50,
        }
    }

    #[test]
    fn a_valid_event_is_trimmed_and_blank_text_dropped() {
        let now = Utc::now();
        let draft = EventDraft::create(input(now), now).unwrap();
        assert_eq!(draft.title, "Rust meetup");
        assert_eq!(draft.description, None);
        assert_eq!(draft.capacity, 50);
        assert_eq!(draft.time_zone.name(), "UTC", "an event nobody placed");
    }

    #[test]
    fn the_time_zone_is_a_known_iana_name_kept_by_a_patch_that_leaves_it_out() {
        let now = Utc::now();
        let mut placed = input(now);
        placed.time_zone = Some(" europe/berlin ".into());
        let draft = EventDraft::create(placed, now).unwrap();
        assert_eq!(draft.time_zone.name(), "Europe/Berlin");
        let retitled = draft
            .apply(
                EventPatch {
                    title: Some("New".into()),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(retitled.time_zone.name(), "Europe/Berlin");
        let moved = draft
            .apply(
                EventPatch {
                    time_zone: Some("Asia/Tokyo".into()),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(moved.time_zone.name(), "Asia/Tokyo");
        for unknown in ["Berlin", "Mars/Olympus", "", "CET+1"] {
            let mut bad = input(now);
            bad.time_zone = Some(unknown.into());
            let errors = EventDraft::create(bad, now).unwrap_err();
            assert_eq!(errors[0].field, "time_zone", "{unknown:?}");
        }
    }

    #[test]
    fn every_rule_reports_its_field() {
        let now = Utc::now();
        let bad = EventInput {
            title: "".into(),
            description: Some("d".repeat(10_001)),
            location: Some("l".repeat(201)),
            category: Some("c".repeat(51)),
            time_zone: Some("Nowhere/Else".into()),
            starts_at: now - Duration::hours(1),
            ends_at: now - Duration::hours(2),
            capacity: 0,
        };
        let fields: Vec<_> = EventDraft::create(bad, now)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        for f in [
            "title",
            "description",
            "location",
            "category",
            "time_zone",
            "starts_at",
            "ends_at",
            "capacity",
        ] {
            assert!(
                fields.contains(&f.to_string()),
                "{f} missing from {fields:?}"
            );
        }
        let mut too_big = input(now);
        too_big.capacity = MAX_CAPACITY + 1;
        assert!(EventDraft::create(too_big, now).is_err());
    }

    #[test]
    fn patches_merge_and_clear() {
        let now = Utc::now();
        let draft = EventDraft::create(input(now), now).unwrap();
        let patched = draft
            .apply(
                EventPatch {
                    location: Some(None),
                    capacity: Some(10),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(patched.location, None);
        assert_eq!(patched.capacity, 10);
        assert_eq!(patched.title, draft.title);
        let bad = draft.apply(
            EventPatch {
                ends_at: Some(draft.starts_at),
                ..Default::default()
            },
            now,
        );
        assert_eq!(bad.unwrap_err()[0].field, "ends_at");
    }

    /// `input` with one field changed, validated.
    fn created(
        now: DateTime<Utc>,
        change: impl FnOnce(&mut EventInput),
    ) -> Result<EventDraft, Vec<String>> {
        let mut candidate = input(now);
        change(&mut candidate);
        EventDraft::create(candidate, now)
            .map_err(|errors| errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn every_length_limit_is_inclusive() {
        let now = Utc::now();
        for (field, max) in [
            ("title", 200),
            ("description", 10_000),
            ("location", 200),
            ("category", 50),
        ] {
            let set = |value: String| {
                move |i: &mut EventInput| match field {
                    "title" => i.title = value,
                    "description" => i.description = Some(value),
                    "location" => i.location = Some(value),
                    _ => i.category = Some(value),
                }
            };
            assert!(
                created(now, set("x".repeat(max))).is_ok(),
                "{field} of {max}"
            );
            assert_eq!(
                created(now, set("x".repeat(max + 1))),
                Err(vec![field.to_owned()]),
                "{field}"
            );
            // Characters, not bytes.
            assert!(
                created(now, set("é".repeat(max))).is_ok(),
                "{field} of {max} two-byte characters"
            );
        }
        assert_eq!(
            created(now, |i| i.title = "   ".into()),
            Err(vec!["title".to_owned()])
        );
    }

    #[test]
    fn text_keeps_its_content_and_refuses_control_characters() {
        let now = Utc::now();
        let draft = created(now, |i| {
            i.description = Some(" two\nlines\tand a tab ".into());
            i.category = Some(" Tech ".into());
        })
        .unwrap();
        assert_eq!(draft.description.as_deref(), Some("two\nlines\tand a tab"));
        assert_eq!(draft.category.as_deref(), Some("Tech"));
        assert_eq!(draft.location.as_deref(), Some("Berlin"));
        assert_eq!(
            created(now, |i| i.title = "bell\u{7}".into()),
            Err(vec!["title".to_owned()])
        );
        assert_eq!(
            created(now, |i| i.location = Some("two\nlines".into())),
            Err(vec!["location".to_owned()])
        );
        assert_eq!(
            created(now, |i| i.category = Some("esc\u{1b}".into())),
            Err(vec!["category".to_owned()])
        );
        assert_eq!(
            created(now, |i| i.description = Some("nul\0".into())),
            Err(vec!["description".to_owned()])
        );
    }

    #[test]
    fn times_and_capacity_at_their_bounds() {
        let now = Utc::now();
        assert_eq!(
            created(now, |i| i.starts_at = now),
            Err(vec!["starts_at".to_owned()])
        );
        assert_eq!(
            created(now, |i| i.ends_at = i.starts_at),
            Err(vec!["ends_at".to_owned()])
        );
        assert!(created(now, |i| i.ends_at = i.starts_at + Duration::microseconds(1)).is_ok());
        assert!(created(now, |i| i.capacity = 1).is_ok());
        assert!(created(now, |i| i.capacity = MAX_CAPACITY).is_ok());
        for bad in [0, -1, MAX_CAPACITY + 1] {
            assert_eq!(
                created(now, |i| i.capacity = bad),
                Err(vec!["capacity".to_owned()])
            );
        }
        let draft = created(now, |_| {}).unwrap();
        let moved_to_the_past = draft.apply(
            EventPatch {
                starts_at: Some(now),
                ..Default::default()
            },
            now,
        );
        assert_eq!(moved_to_the_past.unwrap_err()[0].field, "starts_at");
        // Kept as the databases keep it: microseconds.
        let precise = created(now, |i| i.starts_at += Duration::nanoseconds(1_234_567)).unwrap();
        assert_eq!(precise.starts_at.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn a_patch_tells_a_cleared_field_from_one_left_out() {
        let patch: EventPatch =
            serde_json::from_str(r#"{"location": null, "category": "Tech"}"#).unwrap();
        assert_eq!(patch.location, Some(None));
        assert_eq!(patch.category, Some(Some("Tech".to_owned())));
        assert_eq!(patch.description, None);
        assert_eq!(patch.title, None);
        let empty: EventPatch = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.location, None);
        assert!(serde_json::from_str::<EventPatch>(r#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn filters_compare_trimmed_lower_case() {
        assert_eq!(filter_key("  BerLIN "), "berlin");
        assert_eq!(filter_key("Ünïcode"), "ünïcode");
    }

    fn event(capacity: i32, now: DateTime<Utc>) -> Event {
        let mut draft = EventDraft::create(input(now), now).unwrap();
        draft.capacity = capacity;
        Event::new(UserId::generate(), draft, now)
    }

    #[test]
    fn seats_first_then_the_waitlist_in_order() {
        let now = Utc::now();
        let mut e = event(2, now);
        assert_eq!(e.admit(now), Ok(Admission::Confirmed));
        assert_eq!(e.admit(now), Ok(Admission::Confirmed));
        assert_eq!(e.admit(now), Ok(Admission::Waitlisted { position: 1 }));
        assert_eq!(e.admit(now), Ok(Admission::Waitlisted { position: 2 }));
        assert_eq!((e.seats_taken(), e.waitlist_length()), (2, 2));
        assert_eq!(e.seats_to_fill(), 0);
        e.release(RegistrationStatus::Confirmed, now);
        assert_eq!((e.seats_taken(), e.waitlist_length()), (1, 2));
        assert_eq!(e.seats_to_fill(), 1);
        e.promote_one();
        assert_eq!((e.seats_taken(), e.waitlist_length()), (2, 1));
        e.release(RegistrationStatus::Waitlisted, now);
        assert_eq!((e.seats_taken(), e.waitlist_length()), (2, 0));
        assert_eq!(e.seats_to_fill(), 0);
        assert_eq!(Admission::Confirmed.position(), None);
        assert_eq!(Admission::Waitlisted { position: 3 }.position(), Some(3));
        assert_eq!(
            Admission::Waitlisted { position: 3 }.status(),
            RegistrationStatus::Waitlisted
        );
        assert_eq!(Admission::Confirmed.status(), RegistrationStatus::Confirmed);
    }

    #[test]
    fn a_larger_capacity_leaves_seats_to_fill_and_never_more_than_are_waiting() {
        let now = Utc::now();
        let mut e = event(1, now);
        for _ in 0..4 {
            e.admit(now).unwrap();
        }
        assert_eq!((e.seats_taken(), e.waitlist_length()), (1, 3));
        e.revise(
            EventPatch {
                capacity: Some(3),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(e.seats_to_fill(), 2);
        e.revise(
            EventPatch {
                capacity: Some(100),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(e.seats_to_fill(), 3);
        assert_eq!(
            e.revise(
                EventPatch {
                    capacity: Some(0),
                    ..Default::default()
                },
                now
            ),
            Err(Refusal::Invalid(vec![FieldError::new(
                "capacity",
                "must be between 1 and 100000"
            )]))
        );
    }

    #[test]
    fn capacity_never_drops_below_the_seats_taken() {
        let now = Utc::now();
        let mut e = event(3, now);
        e.admit(now).unwrap();
        e.admit(now).unwrap();
        let lower = |capacity| EventPatch {
            capacity: Some(capacity),
            ..Default::default()
        };
        assert_eq!(
            e.revise(lower(1), now),
            Err(Refusal::CapacityBelowSeatsTaken { seats_taken: 2 })
        );
        assert_eq!(e.revise(lower(2), now), Ok(()));
        assert_eq!(e.draft.capacity, 2);
    }

    #[test]
    fn cancelled_or_started_events_admit_no_one_and_change_no_more() {
        let now = Utc::now();
        let mut e = event(3, now);
        assert!(!e.is_cancelled());
        assert!(e.may_be_changed_by(e.organizer, false));
        assert!(!e.may_be_changed_by(UserId::generate(), false));
        assert!(e.may_be_changed_by(UserId::generate(), true));
        let later = now + Duration::days(2);
        assert_eq!(
            e.admit(later),
            Err(Refusal::RegistrationClosed("already started"))
        );
        assert_eq!(
            e.admit(e.draft.starts_at),
            Err(Refusal::RegistrationClosed("already started"))
        );
        assert!(e.cancel(now));
        assert!(!e.cancel(now));
        assert!(e.is_cancelled());
        assert_eq!(e.admit(now), Err(Refusal::RegistrationClosed("cancelled")));
        assert_eq!(
            e.revise(EventPatch::default(), now),
            Err(Refusal::EventCancelled)
        );
    }
}
