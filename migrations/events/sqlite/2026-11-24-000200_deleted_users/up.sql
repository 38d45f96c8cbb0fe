-- Accounts the events module learnt were deleted (from `user.deleted`), so that a restarted
-- process still refuses their unexpired access tokens.
CREATE TABLE events_deleted_users (
    user_id TEXT PRIMARY KEY NOT NULL,
    deleted_at TIMESTAMP NOT NULL
);
CREATE INDEX events_deleted_users_by_time ON events_deleted_users (deleted_at);
