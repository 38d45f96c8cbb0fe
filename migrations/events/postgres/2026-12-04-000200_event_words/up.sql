-- Each word of each event's search text, with the event's start: a word's events in list
-- order. The full-text index answers "which events have this word" at the cost of their
-- number (a bitmap of every match, then every one read to sort by start: 7 ms for a word a
-- thousand of a million events have); this answers "the next page of them" reading a page.
-- A query word beginning several indexed words reads each of their lists, merged.
-- Written by the application with `search_text` (a trigger could not split the words the same
-- way on SQLite, and both databases must hold the same rows). `word` compares byte by byte, so
-- a prefix is one range of it.
CREATE TABLE event_words (
    word TEXT COLLATE "C" NOT NULL,
    starts_at TIMESTAMP NOT NULL,
    event_id TEXT NOT NULL REFERENCES events (id),
    PRIMARY KEY (word, starts_at, event_id)
);
INSERT INTO event_words (word, starts_at, event_id)
SELECT DISTINCT word, starts_at, id
FROM events, unnest(string_to_array(search_text, ' ')) AS word
WHERE search_text IS NOT NULL AND word <> '';

-- Whether an event's words are in `event_words` at its current start and text: NULL when not
-- (written before this migration, or by an older version during a rolling upgrade); the
-- application lists those, at start and every minute, as it indexes text. A version that
-- lists the words raises the number in the same statement as it writes the text; any other
-- change of the text or the start (an older version's) unlists the event.
ALTER TABLE events ADD COLUMN words_listed INTEGER;
UPDATE events SET words_listed = 1 WHERE search_text IS NOT NULL;
DROP INDEX events_unindexed;
CREATE INDEX events_unlisted ON events (id) WHERE words_listed IS NULL;
CREATE FUNCTION events_unlist_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.words_listed := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_unlist_words BEFORE UPDATE OF search_text, starts_at ON events
FOR EACH ROW
WHEN ((OLD.search_text IS DISTINCT FROM NEW.search_text OR OLD.starts_at <> NEW.starts_at)
      AND NEW.words_listed IS NOT DISTINCT FROM OLD.words_listed)
EXECUTE FUNCTION events_unlist_words();
