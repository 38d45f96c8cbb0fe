//! Time zones, by IANA name (`Europe/Berlin`): where an event takes place, and the local time
//! there of an instant. Instants stay UTC everywhere else; a zone only says how to show them.
//! The zone database is the one built into the binary (jiff's bundle), so every process and
//! every machine accepts the same names and agrees on their rules.

use chrono::{DateTime, Utc};
use jiff::{Timestamp, Zoned, tz::TimeZone};

/// A known IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone(TimeZone);

impl Zone {
    /// The zone named `name` (its case does not matter), if the database knows it.
    pub fn parse(name: &str) -> Option<Self> {
        // The database also answers for POSIX strings and paths; only names are zones here.
        if name.is_empty() || name.len() > 64 || name.starts_with('/') || name.contains("..") {
            return None;
        }
        TimeZone::get(name)
            .ok()
            .filter(|tz| tz.iana_name().is_some())
            .map(Self)
    }

    /// UTC, the zone of an event nobody placed.
    pub fn utc() -> Self {
        Self(TimeZone::UTC)
    }

    /// The zone named `name`, or UTC when it is unknown (a name stored by a later version).
    pub fn or_utc(name: &str) -> Self {
        Self::parse(name).unwrap_or_else(Self::utc)
    }

    /// Its IANA name, as the database spells it.
    pub fn name(&self) -> &str {
        self.0.iana_name().unwrap_or("UTC")
    }

    /// The local time of `instant` here.
    pub fn local(&self, instant: DateTime<Utc>) -> Zoned {
        Timestamp::from_microsecond(instant.timestamp_micros())
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.0.clone())
    }

    /// `instant` as people read it here: `Sat 5 Dec 2026, 19:00 CET`.
    pub fn describe(&self, instant: DateTime<Utc>) -> String {
        self.local(instant)
            .strftime("%a %-d %b %Y, %H:%M %Z")
            .to_string()
    }

    /// The span from `starts` to `ends` here, the end's date said only when it differs:
    /// `Sat 5 Dec 2026, 19:00–21:00 CET (Europe/Berlin)`.
    pub fn describe_span(&self, starts: DateTime<Utc>, ends: DateTime<Utc>) -> String {
        let (from, to) = (self.local(starts), self.local(ends));
        let end = if from.date() == to.date() {
            to.strftime("%H:%M %Z").to_string()
        } else {
            to.strftime("%a %-d %b %Y, %H:%M %Z").to_string()
        };
        // Across a change of the clocks, each time says its own offset.
        let start = if from.offset() == to.offset() {
            from.strftime("%a %-d %b %Y, %H:%M").to_string()
        } else {
            from.strftime("%a %-d %b %Y, %H:%M %Z").to_string()
        };
        format!("{start}–{end} ({})", self.name())
    }

    /// The underlying zone, for callers that need its rules (calendar files).
    pub fn time_zone(&self) -> &TimeZone {
        &self.0
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn names_are_iana_names_whatever_their_case() {
        assert_eq!(
            Zone::parse("europe/berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
        assert_eq!(
            Zone::parse("America/Argentina/Buenos_Aires")
                .unwrap()
                .name(),
            "America/Argentina/Buenos_Aires"
        );
        for unknown in [
            "",
            "Mars/Olympus",
            "Europe/Berlin ",
            "/etc/passwd",
            "../UTC",
            "EST5EDT,M3.2.0,M11.1.0",
            "Europe/Berlin\0",
        ] {
            assert!(Zone::parse(unknown).is_none(), "{unknown:?}");
        }
    }

    #[test]
    fn local_times_follow_the_zone_and_its_summer_time() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(
            berlin.describe(at("2026-12-05T18:00:00Z")),
            "Sat 5 Dec 2026, 19:00 CET"
        );
        assert_eq!(
            berlin.describe(at("2026-07-04T18:00:00Z")),
            "Sat 4 Jul 2026, 20:00 CEST"
        );
        assert_eq!(
            berlin.describe_span(at("2026-12-05T18:00:00Z"), at("2026-12-05T20:30:00Z")),
            "Sat 5 Dec 2026, 19:00–21:30 CET (Europe/Berlin)"
        );
        // Across the night the clocks go back: each time with its own abbreviation.
        assert_eq!(
            berlin.describe_span(at("2026-10-25T00:30:00Z"), at("2026-10-25T01:30:00Z")),
            "Sun 25 Oct 2026, 02:30 CEST–02:30 CET (Europe/Berlin)"
        );
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        assert_eq!(
            tokyo.describe_span(at("2026-12-05T14:00:00Z"), at("2026-12-05T16:00:00Z")),
            "Sat 5 Dec 2026, 23:00–Sun 6 Dec 2026, 01:00 JST (Asia/Tokyo)"
        );
    }
}
