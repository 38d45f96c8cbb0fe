DROP TABLE users_outbox;
DROP TABLE refresh_tokens;
DROP TABLE users;
