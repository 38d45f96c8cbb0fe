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
