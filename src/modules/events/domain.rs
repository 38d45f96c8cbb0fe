//! The events module's rules, free of I/O: what a valid event is, how a patch applies, who gets
//! a seat and how many waitlisted people a freed or added seat promotes.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::platform::{
    problem::FieldError,
    text::{Lines, check_text},
};

pub const MAX_CAPACITY: i64 = 100_000;

/// A validated event's editable fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub title: String,
    pub description: Option<String>,
    pub location: Option<String>,
    pub category: Option<String>,
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
    /// Must be in the future.
    pub starts_at: DateTime<Utc>,
    /// Must be after `starts_at`.
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
    pub starts_at: Option<DateTime<Utc>>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStatus {
    Confirmed,
    Waitlisted,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Waitlisted => "waitlisted",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "confirmed" {
            Self::Confirmed
        } else {
            Self::Waitlisted
        }
    }
}

/// A newcomer gets a seat while one is free, otherwise a place on the waitlist.
pub fn admit(seats_taken: i32, capacity: i32) -> RegistrationStatus {
    if seats_taken < capacity {
        RegistrationStatus::Confirmed
    } else {
        RegistrationStatus::Waitlisted
    }
}

/// How many waitlisted registrations to confirm so that nobody waits beside a free seat.
pub fn seats_to_fill(capacity: i32, seats_taken: i32, waitlist_length: i32) -> i32 {
    (capacity - seats_taken).clamp(0, waitlist_length.max(0))
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
    }

    #[test]
    fn every_rule_reports_its_field() {
        let now = Utc::now();
        let bad = EventInput {
            title: "".into(),
            description: Some("d".repeat(10_001)),
            location: Some("l".repeat(201)),
            category: Some("c".repeat(51)),
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

    #[test]
    fn seats_and_waitlist() {
        assert_eq!(admit(49, 50), RegistrationStatus::Confirmed);
        assert_eq!(admit(50, 50), RegistrationStatus::Waitlisted);
        assert_eq!(seats_to_fill(50, 49, 3), 1);
        assert_eq!(seats_to_fill(60, 50, 3), 3);
        assert_eq!(seats_to_fill(50, 50, 3), 0);
        assert_eq!(seats_to_fill(50, 10, 0), 0);
    }
}
