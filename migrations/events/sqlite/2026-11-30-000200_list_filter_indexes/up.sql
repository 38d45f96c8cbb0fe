-- The event list must stay flat as events grow: every filter combination the API allows gets
-- an index whose leading columns are its equality filters (status first, always given), then
-- the list's order (starts_at, id). A `from`/`to` range and the keyset cursor then read one
-- contiguous index range, and the first page stops after `limit` rows whatever the table size.
-- Without them `?category=nosuch` walked every scheduled event (2 s at a million rows).
DROP INDEX events_by_organizer;
CREATE INDEX events_by_organizer_start ON events (status, organizer_id, starts_at, id);
CREATE INDEX events_by_category_start ON events (status, category_key, starts_at, id);
CREATE INDEX events_by_location_start ON events (status, location_key, starts_at, id);
CREATE INDEX events_by_organizer_category_start ON events (status, organizer_id, category_key, starts_at, id);
CREATE INDEX events_by_organizer_location_start ON events (status, organizer_id, location_key, starts_at, id);
CREATE INDEX events_by_category_location_start ON events (status, category_key, location_key, starts_at, id);
CREATE INDEX events_by_all_filters_start ON events (status, organizer_id, category_key, location_key, starts_at, id);

-- SQLite plans without statistics and then prefers a `from`/`to` range on events_by_start to an
-- equality on a filter's index (it takes every equality to match ~10 rows). These statistics
-- state the shape the indexes are designed for (two statuses, many start times, organisers
-- with hundreds of events, categories and locations with thousands), so a filter's own index wins.
-- `ANALYZE` on a real database replaces them with measured ones.
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE tbl = 'events';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('events', 'events_by_start', '1000000 500000 2 1'),
    ('events', 'events_by_organizer_start', '1000000 500000 1000 1 1'),
    ('events', 'events_by_category_start', '1000000 500000 20000 1 1'),
    ('events', 'events_by_location_start', '1000000 500000 20000 1 1'),
    ('events', 'events_by_organizer_category_start', '1000000 500000 1000 200 1 1'),
    ('events', 'events_by_organizer_location_start', '1000000 500000 1000 200 1 1'),
    ('events', 'events_by_category_location_start', '1000000 500000 20000 1000 1 1'),
    ('events', 'events_by_all_filters_start', '1000000 500000 1000 200 5 1 1');
