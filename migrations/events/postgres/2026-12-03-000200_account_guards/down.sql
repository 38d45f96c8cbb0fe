DROP TRIGGER events_deleted_users_mark_guard ON events_deleted_users;
DROP FUNCTION events_mark_account_deleted();
DROP TABLE events_account_guards;
