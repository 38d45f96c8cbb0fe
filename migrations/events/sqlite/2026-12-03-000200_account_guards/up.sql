-- One row per account that wrote to this module: every write locks its account's row as it
-- checks that the account is alive, and the deletion cascade marks it deleted under the same
-- lock. A write and a deletion of one account therefore take turns, and each sees the other's
-- outcome: a sign-up is either refused or committed before the cascade looks for it. (A lock
-- on a row, unlike an advisory lock, is checked against the row's latest version in the same
-- statement: a sign-up is one statement on PostgreSQL.)
CREATE TABLE events_account_guards (
    user_id TEXT PRIMARY KEY NOT NULL,
    deleted_at TIMESTAMP
);
INSERT INTO events_account_guards (user_id, deleted_at)
SELECT user_id, deleted_at FROM events_deleted_users;

-- Versions before this one record a deletion only in `events_deleted_users`: that record marks
-- the guard row too, so a sign-up of this version refuses an account an older instance deleted.
CREATE TRIGGER events_deleted_users_mark_guard AFTER INSERT ON events_deleted_users
BEGIN
    INSERT INTO events_account_guards (user_id, deleted_at) VALUES (NEW.user_id, NEW.deleted_at)
    ON CONFLICT (user_id) DO UPDATE
    SET deleted_at = COALESCE(events_account_guards.deleted_at, excluded.deleted_at);
END;
