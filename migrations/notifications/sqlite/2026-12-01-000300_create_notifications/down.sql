DROP TABLE notifications_inbox;
DROP TABLE unsubscribe_tokens;
DROP TABLE mail_queue;
DROP TABLE notification_settings;
DROP TABLE notifications;
