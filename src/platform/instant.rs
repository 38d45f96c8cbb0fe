//! The one rule for instants a client sends: RFC 3339 (`2026-12-01T18:00:00Z`, any offset), a
//! year from 0001 to 9999 once in UTC, and no leap second (`:60`). chrono alone would take a
//! leap second and, through its lenient parser, years of five digits: SQLite would then store one
//! thing and PostgreSQL another (or refuse it), and a five-digit year renders outside RFC 3339
//! and makes a cursor the server then refuses. Checked as the value is read, so both backends
//! see only instants they store alike.

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, de::Error};

/// Why a text is not an instant the API accepts.
pub fn parse(text: &str) -> Result<DateTime<Utc>, &'static str> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|_| "must be an RFC 3339 time such as 2026-12-01T18:00:00Z")?;
    if parsed.nanosecond() >= 1_000_000_000 {
        return Err("must not be a leap second (:60)");
    }
    let utc = parsed.with_timezone(&Utc);
    if !(1..=9999).contains(&utc.year()) {
        return Err("must fall in the years 0001 to 9999 (UTC)");
    }
    // Both databases keep microseconds: a finer instant would compare differently on each.
    Ok(utc.trunc_subsecs(6))
}

/// `deserialize_with` for a required instant.
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional instant (with `#[serde(default)]`).
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse(&text).map_err(D::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_both_backends_store_alike_are_accepted() {
        for fine in [
            "2026-12-01T18:00:00Z",
            "2026-12-01T18:00:00.123456Z",
            "2026-12-01T19:00:00+01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-12-01 18:00:00Z", // RFC 3339 allows a space for the T
        ] {
            assert!(parse(fine).is_ok(), "{fine}");
        }
        assert_eq!(
            parse("2026-12-01T19:00:00+01:00").unwrap(),
            parse("2026-12-01T18:00:00Z").unwrap()
        );
    }

    #[test]
    fn leap_seconds_years_out_of_range_and_lenient_spellings_are_refused() {
        for bad in [
            "2026-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "+10000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:00:00+01:00",
            "-0001-01-01T00:00:00Z",
            "2026-12-01T18:00:00",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
