-- Each word of each event's search text, with the event's start: a word's events in list
-- order. The full-text index answers "which events have this word" at the cost of their
-- number (a bitmap of every match, then every one read to sort by start: 7 ms for a word a
-- thousand of a million events have); this answers "the next page of them" reading a page.
-- A query word beginning several indexed words reads each of their lists, merged.
-- Written by the application with `search_text` (never by a trigger: SQLite's cannot split
-- words, and both databases must hold the same rows). `word` compares byte by byte, so a
-- prefix is one range of it.
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
