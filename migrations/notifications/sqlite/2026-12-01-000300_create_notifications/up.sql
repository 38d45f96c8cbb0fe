-- What people are told in the app, newest first per person. dedupe_key makes a redelivered
-- domain event a no-op (one notification per cause and person).
CREATE TABLE notifications (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    event_id TEXT,
    dedupe_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    read_at TIMESTAMP
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at, id);
-- Which kinds of mail a person wants; no row means every kind.
CREATE TABLE notification_settings (
    user_id TEXT PRIMARY KEY NOT NULL,
    promotion BOOLEAN NOT NULL,
    cancellation BOOLEAN NOT NULL,
    changes BOOLEAN NOT NULL,
    reminders BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- Mail to send: written with the notification, sent by the module's worker, retried with
-- backoff, claimed for a while by the instance sending it, marked sent once the server took it.
-- message_id is stable, so a resend after a crash is recognisable as the same mail.
CREATE TABLE mail_queue (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    user_id TEXT,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    unsubscribe_url TEXT,
    message_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_until TIMESTAMP,
    sent_at TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mail_queue_due ON mail_queue (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX mail_queue_by_user ON mail_queue (user_id);
-- One-click unsubscribe links (RFC 8058): a token per person and kind of mail.
CREATE TABLE unsubscribe_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    UNIQUE (user_id, kind)
);
CREATE TABLE notifications_inbox (
    message_id TEXT PRIMARY KEY NOT NULL,
    topic TEXT NOT NULL,
    handled_at TIMESTAMP NOT NULL
);
