-- The events module's tables. organizer_id and user_id are ids the users module issued; there
-- is deliberately no foreign key to it: the modules share no tables.
CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    organizer_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    location TEXT,
    location_key TEXT,                   -- lower-cased, for the case-insensitive filter
    category TEXT,
    category_key TEXT,
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP NOT NULL,
    capacity INTEGER NOT NULL CHECK (capacity > 0),
    seats_taken INTEGER NOT NULL DEFAULT 0,
    waitlist_length INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- The capacity invariant, enforced by the database as a last line of defence.
    CHECK (seats_taken >= 0 AND seats_taken <= capacity AND waitlist_length >= 0)
);
CREATE INDEX events_by_start ON events (status, starts_at, id);
CREATE INDEX events_by_organizer ON events (organizer_id);

CREATE TABLE registrations (
    event_id TEXT NOT NULL REFERENCES events (id),
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'waitlisted')),
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX registrations_by_event ON registrations (event_id, created_at, user_id);
CREATE INDEX registrations_by_user ON registrations (user_id, created_at, event_id);

-- Domain events this module has handled, so a redelivery is a no-op.
CREATE TABLE events_inbox (
    message_id TEXT PRIMARY KEY NOT NULL,
    topic TEXT NOT NULL,
    handled_at TIMESTAMP NOT NULL
);
