DROP TABLE events_deleted_users;
