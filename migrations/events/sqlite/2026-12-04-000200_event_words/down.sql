DROP TABLE event_words;
