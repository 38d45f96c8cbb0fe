-- Free-text search: each event's title, description, location and category reduced to plain
-- lower-case words without accents (by the application, so both databases index the same
-- text), indexed as a tsvector (the `simple` configuration: no stemming, no stop words), so
-- prefix queries (`ber:*`) use the index. Rows from before this migration are filled in at start.
ALTER TABLE events ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
CREATE INDEX events_search ON events USING GIN (to_tsvector('simple', search_text));
