-- Free-text search: each event's title, description, location and category reduced to plain
-- lower-case words without accents (by the application, so both databases index the same
-- text), indexed by FTS5 with prefixes; the `ascii` tokenizer splits only at the spaces the
-- application put between words, so its tokens are exactly those words. The FTS row of an
-- event is a number drawn from its id.
-- NULL: not indexed yet (events from before this migration, or written by an older version
-- during a rolling upgrade): the application fills those in, at start and every minute.
ALTER TABLE events ADD COLUMN search_text TEXT;
CREATE INDEX events_unindexed ON events (id) WHERE search_text IS NULL;
CREATE VIRTUAL TABLE events_search USING fts5(
    event_id UNINDEXED,
    search_text,
    tokenize = 'ascii',
    prefix = '2 3'
);
