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

-- Versions before this one record a deletion only in `events_deleted_users`, and their cascade
-- records it before it reads the account's registrations. During a rolling upgrade that record
-- marks the guard row too (waiting, like the new cascade, for the sign-ups holding it), so a
-- sign-up of this version never slips past an older instance's cascade.
CREATE FUNCTION events_mark_account_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_account_guards (user_id, deleted_at) VALUES (NEW.user_id, NEW.deleted_at)
    ON CONFLICT (user_id) DO UPDATE
    SET deleted_at = COALESCE(events_account_guards.deleted_at, excluded.deleted_at);
    RETURN NEW;
END
$$;
CREATE TRIGGER events_deleted_users_mark_guard AFTER INSERT ON events_deleted_users
FOR EACH ROW EXECUTE FUNCTION events_mark_account_deleted();
