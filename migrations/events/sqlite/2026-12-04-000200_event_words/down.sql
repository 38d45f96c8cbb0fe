DROP TRIGGER events_unlist_words;
DROP INDEX events_unlisted;
ALTER TABLE events DROP COLUMN words_listed;
CREATE INDEX events_unindexed ON events (id) WHERE search_text IS NULL;
DROP TABLE event_words;
