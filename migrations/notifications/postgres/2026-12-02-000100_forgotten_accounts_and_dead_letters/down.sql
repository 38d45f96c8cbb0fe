DROP INDEX notifications_inbox_age;
DROP INDEX mail_queue_given_up;
DROP INDEX mail_queue_sent;
DROP INDEX mail_queue_due;
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE sent_at IS NULL;
ALTER TABLE mail_queue DROP COLUMN given_up_at;
DROP TABLE notifications_forgotten_users;
