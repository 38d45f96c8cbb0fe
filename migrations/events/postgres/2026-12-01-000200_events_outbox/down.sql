DROP TABLE events_outbox;
