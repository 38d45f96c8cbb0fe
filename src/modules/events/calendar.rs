//! Events as iCalendar (RFC 5545): one event's `.ics` file and a person's feed of the events
//! they registered for. Times are written in the venue's zone (`DTSTART;TZID=Europe/Berlin:…`),
//! with a `VTIMEZONE` giving that zone's offsets and changes around the events, so a calendar
//! shows the right hour even where its own zone database differs; a stable `UID` per event and a
//! `SEQUENCE` raised by each change of time or place let calendars update what they imported.

use std::{collections::BTreeMap, fmt::Write};

use chrono::{DateTime, Duration, Utc};
use jiff::{Timestamp, tz::TimeZone};

use super::domain::Event;
use crate::platform::zone::Zone;

/// One event of a calendar, with the address of its page.
pub struct Entry<'a> {
    pub event: &'a Event,
    pub url: String,
    /// The calendar's owner is on its waitlist (a tentative event for them).
    pub waiting: bool,
}

/// A calendar named `name` holding `entries`, stamped `now`.
pub fn render(name: &str, entries: &[Entry<'_>], now: DateTime<Utc>) -> String {
    let mut out = Lines::default();
    out.line("BEGIN:VCALENDAR");
    out.line("VERSION:2.0");
    out.line("PRODID:-//rsvp//events//EN");
    out.line("CALSCALE:GREGORIAN");
    out.line("METHOD:PUBLISH");
    out.property("X-WR-CALNAME", &text(name));
    // Each zone once, spanning every event in it.
    let mut zones: BTreeMap<&str, (&Zone, DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for entry in entries {
        let draft = &entry.event.draft;
        if draft.time_zone.name() == "UTC" {
            continue;
        }
        let span = zones.entry(draft.time_zone.name()).or_insert((
            &draft.time_zone,
            draft.starts_at,
            draft.ends_at,
        ));
        span.1 = span.1.min(draft.starts_at);
        span.2 = span.2.max(draft.ends_at);
    }
    for (zone, from, to) in zones.values() {
        time_zone(
            &mut out,
            zone,
            *from - Duration::days(366),
            *to + Duration::days(366),
        );
    }
    for entry in entries {
        event(&mut out, entry, now);
    }
    out.line("END:VCALENDAR");
    out.0
}

fn event(out: &mut Lines, entry: &Entry<'_>, now: DateTime<Utc>) {
    let (event, draft) = (entry.event, &entry.event.draft);
    out.line("BEGIN:VEVENT");
    out.property("UID", &format!("{}@rsvp", event.id));
    out.property("DTSTAMP", &utc(now));
    out.property("CREATED", &utc(event.created_at));
    out.property("LAST-MODIFIED", &utc(event.updated_at));
    out.property("SEQUENCE", &event.sequence().to_string());
    for (name, at) in [("DTSTART", draft.starts_at), ("DTEND", draft.ends_at)] {
        let local = draft.time_zone.local(at);
        // A local time the clocks show twice means its first occurrence (RFC 5545, 3.3.5): the
        // second is written as UTC instead.
        let second_of_two = draft
            .time_zone
            .time_zone()
            .to_ambiguous_timestamp(local.datetime())
            .earlier()
            .is_ok_and(|first| first != local.timestamp());
        if draft.time_zone.name() == "UTC" || second_of_two {
            out.property(name, &utc(at));
        } else {
            let local = local.strftime("%Y%m%dT%H%M%S").to_string();
            out.property(&format!("{name};TZID={}", draft.time_zone.name()), &local);
        }
    }
    out.property("SUMMARY", &text(&draft.title));
    if let Some(description) = &draft.description {
        out.property("DESCRIPTION", &text(description));
    }
    if let Some(location) = &draft.location {
        out.property("LOCATION", &text(location));
    }
    if let Some(category) = &draft.category {
        out.property("CATEGORIES", &text(category));
    }
    out.property("URL", &entry.url);
    let status = match (event.is_cancelled(), entry.waiting) {
        (true, _) => "CANCELLED",
        (false, true) => "TENTATIVE",
        (false, false) => "CONFIRMED",
    };
    out.property("STATUS", status);
    out.line("END:VEVENT");
}

/// A `VTIMEZONE` for `zone` valid from `from` to `to`: the offset in force at `from`, then each
/// change of offset until `to`, each as the observance it starts (standard or daylight time).
fn time_zone(out: &mut Lines, zone: &Zone, from: DateTime<Utc>, to: DateTime<Utc>) {
    let tz = zone.time_zone();
    let stamp =
        |at: DateTime<Utc>| Timestamp::from_second(at.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
    let (from, to) = (stamp(from), stamp(to));
    out.line("BEGIN:VTIMEZONE");
    out.property("TZID", zone.name());
    let first = tz.to_offset_info(from);
    observance(
        out,
        from,
        first.offset(),
        first.offset(),
        first.abbreviation(),
        first.dst().is_dst(),
    );
    let mut before = first.offset();
    // A bound on the changes written: a zone changes its offset twice a year at most in practice.
    for transition in tz
        .following(from)
        .take_while(|t| t.timestamp() <= to)
        .take(64)
    {
        let after = transition.offset();
        observance(
            out,
            transition.timestamp(),
            before,
            after,
            transition.abbreviation(),
            transition.dst().is_dst(),
        );
        before = after;
    }
    out.line("END:VTIMEZONE");
}

/// One observance: from `at` (written as the local time before it, as RFC 5545 wants), clocks
/// move from offset `from` to `to`.
fn observance(
    out: &mut Lines,
    at: Timestamp,
    from: jiff::tz::Offset,
    to: jiff::tz::Offset,
    name: &str,
    daylight: bool,
) {
    let kind = if daylight { "DAYLIGHT" } else { "STANDARD" };
    out.line(&format!("BEGIN:{kind}"));
    let local_before = at.to_zoned(TimeZone::fixed(from));
    out.property(
        "DTSTART",
        &local_before.strftime("%Y%m%dT%H%M%S").to_string(),
    );
    out.property("TZOFFSETFROM", &offset(from));
    out.property("TZOFFSETTO", &offset(to));
    if !name.is_empty() {
        out.property("TZNAME", &text(name));
    }
    out.line(&format!("END:{kind}"));
}

/// `+0100`, `-0930`, `+053328` (seconds only when the zone has them).
fn offset(offset: jiff::tz::Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
}

/// An instant in UTC form: `20261205T180000Z`.
fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value: backslash, semicolon, comma and line breaks escaped.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Content lines, CRLF-terminated and folded at 75 octets (never inside a character).
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn property(&mut self, name: &str, value: &str) {
        self.line(&format!("{name}:{value}"));
    }

    fn line(&mut self, line: &str) {
        let mut width = 0;
        for c in line.chars() {
            // The first line holds 75 octets; each continuation a space and 74 more.
            if width + c.len_utf8() > 75 {
                self.0.push_str("\r\n ");
                width = 1;
            }
            self.0.push(c);
            width += c.len_utf8();
        }
        let _ = write!(self.0, "\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_long_lines_fold_between_characters() {
        assert_eq!(text("a,b;c\\d\ne\r\n"), "a\\,b\\;c\\\\d\\ne\\n");
        let mut lines = Lines::default();
        let long = "ä".repeat(100);
        lines.property("SUMMARY", &long);
        for line in lines.0.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.len() <= 75, "{} octets", line.len());
        }
        let unfolded = lines.0.replace("\r\n ", "");
        assert_eq!(unfolded, format!("SUMMARY:{long}\r\n"));
    }

    #[test]
    fn the_second_of_two_equal_local_times_is_written_in_utc() {
        use super::super::domain::{Event, EventDraft};
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let event = |starts: &str| {
            let draft = EventDraft {
                title: "Night".into(),
                description: None,
                location: None,
                category: None,
                time_zone: Zone::parse("Europe/Berlin").unwrap(),
                starts_at: at(starts),
                ends_at: at("2026-10-25T02:30:00Z"),
                capacity: 1,
            };
            Event::new(
                crate::platform::ids::UserId::from(uuid::Uuid::nil()),
                draft,
                at("2026-01-01T00:00:00Z"),
            )
        };
        let render_one = |event: &Event| {
            let entry = Entry {
                event,
                url: "u".into(),
                waiting: false,
            };
            render("c", &[entry], at("2026-01-01T00:00:00Z"))
        };
        // 00:30 UTC is the first 02:30 in Berlin that night (CEST), 01:30 UTC the second (CET).
        let first = render_one(&event("2026-10-25T00:30:00Z"));
        assert!(
            first.contains("DTSTART;TZID=Europe/Berlin:20261025T023000\r\n"),
            "{first}"
        );
        let second = render_one(&event("2026-10-25T01:30:00Z"));
        assert!(second.contains("DTSTART:20261025T013000Z\r\n"), "{second}");
        assert!(
            second.contains("DTEND;TZID=Europe/Berlin:20261025T033000\r\n"),
            "{second}"
        );
    }

    #[test]
    fn offsets_are_written_as_rfc_5545_wants() {
        let of = |s| offset(jiff::tz::Offset::from_seconds(s).unwrap());
        assert_eq!(of(3600), "+0100");
        assert_eq!(of(-9 * 3600 - 1800), "-0930");
        assert_eq!(of(0), "+0000");
        assert_eq!(of(3600 + 33 * 60 + 28), "+013328");
    }
}
