-- Free-text search: each event's title, description, location and category reduced to plain
-- lower-case words without accents (by the application, so both databases index the same
-- text), indexed as a tsvector made of exactly those words (no parser of PostgreSQL's splits
-- them again, so both databases find the same events), so prefix queries (`'ber':*`) use the
-- index. NULL: not indexed yet (events from before this
-- migration, or written by an older version during a rolling upgrade): the application fills
-- those in, at start and every minute.
ALTER TABLE events ADD COLUMN search_text TEXT;
CREATE INDEX events_unindexed ON events (id) WHERE search_text IS NULL;
CREATE INDEX events_search ON events USING GIN (array_to_tsvector(string_to_array(search_text, ' ')));
