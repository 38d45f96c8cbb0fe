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
