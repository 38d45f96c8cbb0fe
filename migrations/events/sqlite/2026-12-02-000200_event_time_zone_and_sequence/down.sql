ALTER TABLE events DROP COLUMN sequence;
ALTER TABLE events DROP COLUMN time_zone;
