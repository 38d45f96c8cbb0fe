// Diesel table definitions of the events module, with types both backends share.

diesel::table! {
    events (id) {
        id -> Text,
        organizer_id -> Text,
        title -> Text,
        description -> Nullable<Text>,
        location -> Nullable<Text>,
        location_key -> Nullable<Text>,
        category -> Nullable<Text>,
        category_key -> Nullable<Text>,
        time_zone -> Text,
        starts_at -> Timestamp,
        ends_at -> Timestamp,
        capacity -> Integer,
        seats_taken -> Integer,
        waitlist_length -> Integer,
        status -> Text,
        sequence -> Integer,
        search_text -> Nullable<Text>,
        words_listed -> Nullable<Integer>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    registrations (event_id, user_id) {
        event_id -> Text,
        user_id -> Text,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    events_inbox (message_id) {
        message_id -> Text,
        topic -> Text,
        handled_at -> Timestamp,
    }
}

// Each word of an event's search text with the event's start: a word's events in list order.
diesel::table! {
    event_words (word, starts_at, event_id) {
        word -> Text,
        starts_at -> Timestamp,
        event_id -> Text,
    }
}

diesel::joinable!(registrations -> events (event_id));
diesel::allow_tables_to_appear_in_same_query!(events, registrations);

diesel::table! {
    events_deleted_users (user_id) {
        user_id -> Text,
        deleted_at -> Timestamp,
    }
}

diesel::table! {
    events_account_guards (user_id) {
        user_id -> Text,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    calendar_feeds (user_id) {
        user_id -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
    }
}
