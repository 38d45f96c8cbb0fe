-- Where an event takes place, as an IANA zone name: instants stay UTC, people see the local
-- time at the venue.
ALTER TABLE events ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
-- Raised by each change of time or place and by the cancellation: calendars that imported the
-- event (its .ics SEQUENCE) take the newer version.
ALTER TABLE events ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
