-- Each word of each event's search text, with the event's start: a word's events in list
-- order. The full-text index answers "which events have this word" at the cost of their
-- number (every match read to sort by start: 11 ms for a word a thousand of a million events
-- have); this answers "the next page of them" reading a page. A query word beginning several
-- indexed words reads each of their lists, merged. Written by the application with
-- `search_text`; `word` compares byte by byte, so a prefix is one range of it.
CREATE TABLE event_words (
    word TEXT NOT NULL,
    starts_at TIMESTAMP NOT NULL,
    event_id TEXT NOT NULL REFERENCES events (id),
    PRIMARY KEY (word, starts_at, event_id)
) WITHOUT ROWID;
-- The events indexed so far, their text split at its spaces.
WITH RECURSIVE split (id, starts_at, word, rest) AS (
    SELECT id, starts_at, '', search_text || ' ' FROM events WHERE search_text IS NOT NULL
    UNION ALL
    SELECT id, starts_at, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
    FROM split WHERE rest <> ''
)
INSERT OR IGNORE INTO event_words (word, starts_at, event_id)
SELECT word, starts_at, id FROM split WHERE word <> '';

-- Whether an event's words are in `event_words` at its current start and text: NULL when not
-- (written before this migration, or by an older version during a rolling upgrade); the
-- application lists those, at start and every minute, as it indexes text. A version that
-- lists the words raises the number in the same statement as it writes the text; any other
-- change of the text or the start (an older version's) unlists the event.
ALTER TABLE events ADD COLUMN words_listed INTEGER;
UPDATE events SET words_listed = 1 WHERE search_text IS NOT NULL;
DROP INDEX events_unindexed;
CREATE INDEX events_unlisted ON events (id) WHERE words_listed IS NULL;
CREATE TRIGGER events_unlist_words AFTER UPDATE OF search_text, starts_at ON events
FOR EACH ROW
WHEN (OLD.search_text IS NOT NEW.search_text OR OLD.starts_at IS NOT NEW.starts_at)
     AND NEW.words_listed IS OLD.words_listed
BEGIN
    UPDATE events SET words_listed = NULL WHERE id = NEW.id;
END;
