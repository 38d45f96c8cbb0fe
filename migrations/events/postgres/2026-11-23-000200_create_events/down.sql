DROP TABLE events_inbox;
DROP TABLE registrations;
DROP TABLE events;
