DROP TABLE events_search;
DROP INDEX events_unindexed;
ALTER TABLE events DROP COLUMN search_text;
