-- A person's calendar feed: a secret address listing the events they registered for, for
-- calendar apps to subscribe to. Only the SHA-256 of the secret is kept; a new one replaces
-- (revokes) the old.
CREATE TABLE calendar_feeds (
    user_id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
);
