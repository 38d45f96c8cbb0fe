-- Accounts deleted, kept so that a restarted process still refuses their unexpired access
-- tokens (it loads the deletions younger than one token lifetime).
CREATE TABLE users_deleted (
    user_id TEXT PRIMARY KEY NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);
CREATE INDEX users_deleted_by_time ON users_deleted (deleted_at);
