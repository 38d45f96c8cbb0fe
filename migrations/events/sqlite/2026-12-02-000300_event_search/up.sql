-- Free-text search: each event's title, description, location and category reduced to plain
-- lower-case words without accents (by the application, so both databases index the same
-- text), indexed by FTS5 with prefixes. The FTS row of an event is a number drawn from its id;
-- rows of events from before this migration are filled in at start.
ALTER TABLE events ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
CREATE VIRTUAL TABLE events_search USING fts5(
    event_id UNINDEXED,
    search_text,
    tokenize = 'unicode61 remove_diacritics 0',
    prefix = '2 3'
);
