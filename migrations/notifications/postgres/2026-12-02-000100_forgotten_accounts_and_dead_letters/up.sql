-- Accounts deleted, remembered so that nothing about them is written again: a domain event or a
-- reminder that reaches this module after the deletion (late, or redelivered) finds them here.
CREATE TABLE notifications_forgotten_users (
    user_id TEXT PRIMARY KEY NOT NULL,
    forgotten_at TIMESTAMP NOT NULL
);
-- A mail the server refused for good, or that could not be sent for the whole retry period, is
-- given up (kept, with its last error, for the operator) instead of retried without end.
ALTER TABLE mail_queue ADD COLUMN given_up_at TIMESTAMP;
DROP INDEX mail_queue_due;
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;
-- Sent and given-up mail is pruned after a while.
CREATE INDEX mail_queue_sent ON mail_queue (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX mail_queue_given_up ON mail_queue (given_up_at) WHERE given_up_at IS NOT NULL;
CREATE INDEX notifications_inbox_age ON notifications_inbox (handled_at);
