DROP TABLE events_account_guards;
