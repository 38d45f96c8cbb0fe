DROP INDEX events_by_all_filters_start;
DROP INDEX events_by_category_location_start;
DROP INDEX events_by_organizer_location_start;
DROP INDEX events_by_organizer_category_start;
DROP INDEX events_by_location_start;
DROP INDEX events_by_category_start;
DROP INDEX events_by_organizer_start;
CREATE INDEX events_by_organizer ON events (organizer_id);
