// Diesel table definitions of the notifications module, with types both backends share.

diesel::table! {
    notifications (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        title -> Text,
        body -> Text,
        event_id -> Nullable<Text>,
        dedupe_key -> Text,
        created_at -> Timestamp,
        read_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    notification_settings (user_id) {
        user_id -> Text,
        promotion -> Bool,
        cancellation -> Bool,
        changes -> Bool,
        reminders -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    mail_queue (id) {
        id -> Text,
        dedupe_key -> Text,
        user_id -> Nullable<Text>,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        unsubscribe_url -> Nullable<Text>,
        message_id -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        claimed_until -> Nullable<Timestamp>,
        sent_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        given_up_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    unsubscribe_tokens (token) {
        token -> Text,
        user_id -> Text,
        kind -> Text,
    }
}

diesel::table! {
    notifications_forgotten_users (user_id) {
        user_id -> Text,
        forgotten_at -> Timestamp,
    }
}

diesel::table! {
    notifications_inbox (message_id) {
        message_id -> Text,
        topic -> Text,
        handled_at -> Timestamp,
    }
}
