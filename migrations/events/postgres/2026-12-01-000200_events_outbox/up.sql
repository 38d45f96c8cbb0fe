-- Domain events of the events module (a seat obtained from the waitlist, an event cancelled or
-- moved), written in the transaction that made them true and relayed afterwards.
CREATE TABLE events_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_outbox_pending ON events_outbox (created_at) WHERE published_at IS NULL;
