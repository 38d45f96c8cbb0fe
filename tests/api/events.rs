//! Publishing, reading, changing and cancelling events; listing with filters and pagination.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, event_body, fields, json_of, problem};

crate::backend_tests!(
    an_event_is_created_read_and_shows_its_organiser,
    invalid_events_are_422_naming_each_field,
    only_the_organiser_or_an_admin_may_change_or_cancel,
    updates_validate_merge_and_clear_fields,
    capacity_can_not_drop_below_seats_taken_and_growth_promotes,
    cancelled_events_stay_readable_and_refuse_changes,
    the_list_filters_by_time_organiser_category_location_and_status,
    paging_through_events_has_no_gaps_or_duplicates,
    bad_query_parameters_are_400,
    an_event_keeps_the_time_zone_of_its_venue,
    q_finds_events_by_the_beginnings_of_their_words,
    past_events_come_newest_first_and_upcoming_ones_have_not_started,
    events_from_before_search_are_found_after_a_restart,
    a_rare_word_is_found_where_its_event_moved,
    an_invisible_character_inside_a_word_keeps_it_one_word,
);

async fn an_event_is_created_read_and_shows_its_organiser(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user_named("Ada").await;
    let body = event_body(25);
    let created = json_of(
        app.post("/api/events", Some(&ada.access_token), body.clone())
            .await,
        StatusCode::CREATED,
    )
    .await;
    for key in ["title", "description", "location", "category"] {
        assert_eq!(created[key], body[key], "{key}");
    }
    assert_eq!(created["capacity"], 25);
    assert_eq!(
        (
            created["seats_taken"].as_i64(),
            created["waitlist_length"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["organizer"], json!({"id": ada.id, "name": "Ada"}));
    let starts =
        chrono::DateTime::parse_from_rfc3339(created["starts_at"].as_str().unwrap()).unwrap();
    // Stored at the microsecond precision both databases keep.
    let sent = chrono::DateTime::parse_from_rfc3339(body["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(starts, chrono::SubsecRound::trunc_subsecs(sent, 6));

    let id = created["id"].as_str().unwrap();
    let read = json_of(
        app.get(&format!("/api/events/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read, created);
    problem(
        app.get(&format!("/api/events/{}", uuid::Uuid::new_v4()), None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/events/123", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.post("/api/events", None, body).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn invalid_events_are_422_naming_each_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let token = Some(ada.access_token.as_str());
    let past = Utc::now() - Duration::hours(1);
    let bad = json!({
        "title": "", "description": "d".repeat(10_001), "location": "l".repeat(201), "category": "c".repeat(51),
        "starts_at": past.to_rfc3339(), "ends_at": (past - Duration::hours(1)).to_rfc3339(), "capacity": 0,
    });
    let body = problem(
        app.post("/api/events", token, bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut f = fields(&body);
    f.sort();
    assert_eq!(
        f,
        [
            "capacity",
            "category",
            "description",
            "ends_at",
            "location",
            "starts_at",
            "title"
        ]
    );
    let mut too_big = event_body(100_001);
    let body = problem(
        app.post("/api/events", token, too_big.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["capacity"]);
    too_big["starts_at"] = json!("next tuesday");
    let body = problem(
        app.post("/api/events", token, too_big.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["starts_at"]);
    too_big["starts_at"] = json!(null);
    problem(
        app.post("/api/events", token, too_big).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Nothing half-made was stored.
    assert!(app.walk("/api/events", None).await.is_empty());
}

async fn only_the_organiser_or_an_admin_may_change_or_cancel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, mallory) = (app.user().await, app.user().await);
    let id = app.event_id(&ada, 5).await;
    let path = format!("/api/events/{id}");
    let body = app
        .expect_problem(
            Method::PATCH,
            &path,
            Some(&mallory),
            json!({"title": "Mine now"}),
            StatusCode::FORBIDDEN,
        )
        .await;
    assert_eq!(body["type"], "urn:rsvp:problem:forbidden");
    problem(
        app.delete(&path, Some(&mallory.access_token)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.get(
            &format!("{path}/registrations"),
            Some(&mallory.access_token),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.patch(&path, None, json!({"title": "x"})).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        json_of(app.get(&path, None).await, StatusCode::OK).await["title"],
        "Rust meetup"
    );

    let admin = app.admin().await;
    let renamed = json_of(
        app.patch(
            &path,
            Some(&admin.access_token),
            json!({"title": "Moderated"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["title"], "Moderated");
    json_of(
        app.get(&format!("{path}/registrations"), Some(&admin.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        app.delete(&path, Some(&admin.access_token)).await.status(),
        StatusCode::NO_CONTENT
    );
    app.expect_problem(
        Method::PATCH,
        &format!("/api/events/{}", uuid::Uuid::new_v4()),
        Some(&ada),
        json!({}),
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn updates_validate_merge_and_clear_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let token = Some(ada.access_token.as_str());
    let event = app.event(&ada, 5, json!({})).await;
    let path = format!("/api/events/{}", event["id"].as_str().unwrap());
    let updated = json_of(
        app.patch(
            &path,
            token,
            json!({"title": "  Renamed ", "location": null, "category": "Music"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["title"], "Renamed");
    assert_eq!(updated["location"], Value::Null);
    assert_eq!(updated["category"], "Music");
    assert_eq!(updated["description"], event["description"]);
    assert_eq!(updated["created_at"], event["created_at"]);
    assert_ne!(updated["updated_at"], event["updated_at"]);

    let body = problem(
        app.patch(&path, token, json!({"ends_at": event["starts_at"]}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["ends_at"]);
    let past = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let body = problem(
        app.patch(&path, token, json!({"starts_at": past})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(fields(&body).contains(&"starts_at".to_owned()));
    let body = problem(
        app.patch(&path, token, json!({"capacity": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["capacity"]);
    let body = problem(
        app.patch(&path, token, json!({"capcity": 10})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("capcity"));
    assert_eq!(
        json_of(app.get(&path, None).await, StatusCode::OK).await["title"],
        "Renamed"
    );
}

async fn capacity_can_not_drop_below_seats_taken_and_growth_promotes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 2).await;
    let mut people = Vec::new();
    for _ in 0..4 {
        let u = app.user().await;
        json_of(
            app.post(
                &format!("/api/events/{id}/registrations"),
                Some(&u.access_token),
                json!({}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        people.push(u);
    }
    let path = format!("/api/events/{id}");
    let body = problem(
        app.patch(&path, Some(&ada.access_token), json!({"capacity": 1}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["type"], "urn:rsvp:problem:capacity-below-seats-taken");
    let grown = json_of(
        app.patch(&path, Some(&ada.access_token), json!({"capacity": 3}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            grown["seats_taken"].as_i64(),
            grown["waitlist_length"].as_i64()
        ),
        (Some(3), Some(1))
    );
    let attendees = app
        .walk(&format!("{path}/registrations"), Some(&ada.access_token))
        .await;
    let statuses: Vec<_> = attendees
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["confirmed", "confirmed", "confirmed", "waitlisted"],
        "the oldest waiting person is promoted first"
    );
    assert_eq!(attendees[3]["user"]["id"], people[3].id);
}

async fn cancelled_events_stay_readable_and_refuse_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 2).await;
    let path = format!("/api/events/{id}");
    assert_eq!(
        app.delete(&path, Some(&ada.access_token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&path, Some(&ada.access_token)).await.status(),
        StatusCode::NO_CONTENT,
        "cancelling is idempotent"
    );
    let event = json_of(app.get(&path, None).await, StatusCode::OK).await;
    assert_eq!(event["status"], "cancelled");
    let body = problem(
        app.patch(&path, Some(&ada.access_token), json!({"title": "Back"}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["type"], "urn:rsvp:problem:event-cancelled");
    problem(
        app.delete(
            &format!("/api/events/{}", uuid::Uuid::new_v4()),
            Some(&ada.access_token),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn the_list_filters_by_time_organiser_category_location_and_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob) = (app.user().await, app.user().await);
    let day = |n: i64| (Utc::now() + Duration::days(n)).to_rfc3339();
    let at = |n: i64| json!({"starts_at": day(n), "ends_at": (Utc::now() + Duration::days(n) + Duration::hours(1)).to_rfc3339()});
    let mut e1 = at(1);
    crate::helpers::merge(&mut e1, json!({"category": "Music", "location": "Paris"}));
    let e1 = app.event(&ada, 5, e1).await;
    let mut e2 = at(3);
    crate::helpers::merge(&mut e2, json!({"category": "music", "location": "Berlin"}));
    let e2 = app.event(&bob, 5, e2).await;
    let mut e3 = at(5);
    crate::helpers::merge(&mut e3, json!({"category": "Tech", "location": "berlin"}));
    let e3 = app.event(&ada, 5, e3).await;
    let cancelled = app.event(&ada, 5, at(2)).await;
    app.delete(
        &format!("/api/events/{}", cancelled["id"].as_str().unwrap()),
        Some(&ada.access_token),
    )
    .await;

    let ids = |items: Vec<Value>| {
        items
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let id = |e: &Value| e["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(app.walk("/api/events", None).await),
        [id(&e1), id(&e2), id(&e3)],
        "ordered by starts_at"
    );
    assert_eq!(
        ids(app.walk("/api/events?category=MUSIC", None).await),
        [id(&e1), id(&e2)]
    );
    assert_eq!(
        ids(app.walk("/api/events?location=BERLIN", None).await),
        [id(&e2), id(&e3)]
    );
    assert_eq!(
        ids(app.walk("/api/events?location=Ber", None).await),
        Vec::<String>::new(),
        "exact match only"
    );
    assert_eq!(
        ids(app
            .walk(&format!("/api/events?organizer_id={}", ada.id), None)
            .await),
        [id(&e1), id(&e3)]
    );
    let from = urlencode(&day(2));
    let to = urlencode(&day(4));
    assert_eq!(
        ids(app
            .walk(&format!("/api/events?from={from}&to={to}"), None)
            .await),
        [id(&e2)]
    );
    assert_eq!(
        ids(app.walk("/api/events?status=cancelled", None).await),
        [id(&cancelled)]
    );
    assert_eq!(
        ids(app
            .walk(
                &format!(
                    "/api/events?status=scheduled&category=tech&organizer_id={}",
                    ada.id
                ),
                None
            )
            .await),
        [id(&e3)]
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn paging_through_events_has_no_gaps_or_duplicates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    // Several events share a start time, so the id must break ties.
    let base = Utc::now() + Duration::days(2);
    let mut created = Vec::new();
    for i in 0..23 {
        let starts = base + Duration::hours(i % 5);
        let extra = json!({"title": format!("E{i}"), "starts_at": starts.to_rfc3339(), "ends_at": (starts + Duration::hours(1)).to_rfc3339()});
        created.push(
            app.event(&ada, 5, extra).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for limit in [1, 7, 23, 100] {
        let walked: Vec<String> = app
            .walk(&format!("/api/events?limit={limit}"), None)
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = walked.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 23, "limit {limit}: duplicates or gaps");
        let mut expected = created.clone();
        expected.sort();
        assert_eq!(sorted, expected);
    }
    let first = json_of(app.get("/api/events", None).await, StatusCode::OK).await;
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        20,
        "default limit is 20"
    );
    // A page fetched after more events appeared continues where it left off.
    let page = json_of(app.get("/api/events?limit=10", None).await, StatusCode::OK).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let early = base - Duration::hours(5);
    app.event(
        &ada,
        5,
        json!({"starts_at": early.to_rfc3339(), "ends_at": base.to_rfc3339()}),
    )
    .await;
    let rest = json_of(
        app.get(&format!("/api/events?limit=100&cursor={cursor}"), None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 13);
}

async fn bad_query_parameters_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=%%%",
        "cursor=Zm9v",
        "from=yesterday",
        "organizer_id=42",
        "status=done",
    ] {
        problem(
            app.get(&format!("/api/events?{query}"), None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

/// An event takes place somewhere: it keeps the IANA zone of its venue (UTC when none is given),
/// spelt as the zone database spells it, through reads, lists and changes; a name the database
/// does not know is 422 naming the field, on both backends alike.
async fn an_event_keeps_the_time_zone_of_its_venue(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let create = |extra: Value| {
        let mut body = event_body(5);
        crate::helpers::merge(&mut body, extra);
        app.post("/api/events", Some(&ada.access_token), body)
    };
    let unplaced = json_of(create(json!({})).await, StatusCode::CREATED).await;
    assert_eq!(unplaced["time_zone"], "UTC");
    let berlin = json_of(
        create(json!({"time_zone": "europe/BERLIN"})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(berlin["time_zone"], "Europe/Berlin");
    let id = berlin["id"].as_str().unwrap();
    let read = json_of(
        app.get(&format!("/api/events/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["time_zone"], "Europe/Berlin");
    let listed = json_of(app.get("/api/events?limit=100", None).await, StatusCode::OK).await;
    let item = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == berlin["id"])
        .expect("listed");
    assert_eq!(item["time_zone"], "Europe/Berlin");
    // A change of anything else keeps it; a change of zone replaces it.
    let path = format!("/api/events/{id}");
    let retitled = json_of(
        app.patch(&path, Some(&ada.access_token), json!({"title": "Renamed"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(retitled["time_zone"], "Europe/Berlin");
    let moved = json_of(
        app.patch(
            &path,
            Some(&ada.access_token),
            json!({"time_zone": "America/Los_Angeles"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["time_zone"], "America/Los_Angeles");
    assert_eq!(moved["starts_at"], berlin["starts_at"], "the instant stays");
    for unknown in [
        json!("Berlin"),
        json!("Mars/Olympus_Mons"),
        json!(""),
        json!("Europe/Berlin\u{0}"),
        json!("../../etc/passwd"),
        json!("CET-1CEST,M3.5.0,M10.5.0/3"),
        json!("x".repeat(300)),
    ] {
        let refused = problem(
            create(json!({"time_zone": unknown})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            refused["errors"][0]["field"], "time_zone",
            "{unknown}: {refused}"
        );
        let refused = problem(
            app.patch(
                &path,
                Some(&ada.access_token),
                json!({"time_zone": unknown}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            refused["errors"][0]["field"], "time_zone",
            "{unknown}: {refused}"
        );
    }
    let wrong_type = problem(
        create(json!({"time_zone": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(wrong_type.to_string().contains("time_zone"), "{wrong_type}");
}

/// `q` finds events by the beginning of any word of their title, description, location or
/// category, whatever the case and accents; every word must match; it combines with the other
/// filters and pages like the list; an edit is found by its new words at once; hostile queries
/// are 400 or simply words, never an error of the search engine.
async fn q_finds_events_by_the_beginnings_of_their_words(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let mut ids = std::collections::HashMap::new();
    for (key, title, description, location, category) in [
        ("mitte", "Meetup", "Monthly", "Berlin Mitte", "Social"),
        (
            "spati",
            "Späti crawl",
            "Kreuzberg at night",
            "Görlitzer Park",
            "Social",
        ),
        ("tech", "Talks", "Short ones", "Hamburg", "Tech"),
        ("alpha", "Alpha", "First letters", "Köln", "Misc"),
    ] {
        let mut body = event_body(5);
        crate::helpers::merge(
            &mut body,
            json!({"title": title, "description": description, "location": location, "category": category}),
        );
        let event = json_of(
            app.post("/api/events", Some(&ada.access_token), body).await,
            StatusCode::CREATED,
        )
        .await;
        ids.insert(key, event["id"].as_str().unwrap().to_owned());
    }
    let found = |query: &'static str| {
        let app = &app;
        let ids = &ids;
        async move {
            let page = json_of(
                app.get(&format!("/api/events?{query}"), None).await,
                StatusCode::OK,
            )
            .await;
            let mut keys: Vec<&str> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| ids.iter().find(|(_, id)| **id == e["id"]).map(|(k, _)| *k))
                .collect();
            keys.sort_unstable();
            keys
        }
    };
    assert_eq!(
        found("q=ber").await,
        ["mitte"],
        "a word's beginning, not its middle (Kreuzberg)"
    );
    assert_eq!(found("q=BERLIN").await, ["mitte"]);
    assert_eq!(found("q=spati").await, ["spati"], "accents do not matter");
    assert_eq!(found("q=SP%C3%84T").await, ["spati"]);
    assert_eq!(found("q=gorl").await, ["spati"], "the location counts");
    assert_eq!(found("q=tec").await, ["tech"], "the category counts");
    assert_eq!(found("q=kreuz").await, ["spati"], "the description counts");
    assert_eq!(
        found("q=ber%20mit").await,
        ["mitte"],
        "every word must match"
    );
    assert_eq!(found("q=ber%20ham").await, Vec::<&str>::new());
    assert_eq!(found("q=so").await, ["mitte", "spati"]);
    assert_eq!(
        found("q=so&location=berlin%20mitte").await,
        ["mitte"],
        "with the other filters"
    );
    assert_eq!(found("q=%2A%22%28").await.len(), 4, "no words: no filter");
    for hostile in [
        "NEAR(a%20b)",
        "%22a%22%20OR%20b",
        "a%3A*%20%26%20!b",
        "%27%3B%20DROP",
        "x%5C",
    ] {
        let response = app.get(&format!("/api/events?q={hostile}"), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{hostile}");
    }
    for refused in ["a%00b".to_owned(), "a".repeat(201)] {
        let response = app.get(&format!("/api/events?q={refused}"), None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{refused}");
    }
    // An edit is found by its new words, not its old ones.
    let alpha = ids["alpha"].clone();
    json_of(
        app.patch(
            &format!("/api/events/{alpha}"),
            Some(&ada.access_token),
            json!({"title": "Omega", "description": null}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found("q=alp").await, Vec::<&str>::new());
    assert_eq!(found("q=ome").await, ["alpha"]);
    // Paged like the list: every match once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?q=so&limit=1&cursor={c}"),
            None => "/api/events?q=so&limit=1".to_owned(),
        };
        let page = json_of(app.get(&path, None).await, StatusCode::OK).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged.len(), 2);
    assert_ne!(paged[0], paged[1]);
}

/// `when=past` lists events that started, newest first, paged backwards without gaps;
/// `when=upcoming` those not started; with neither, every event, earliest first. Both combine
/// with the organiser (an organiser's page). Events are moved into the past with SQL (the API
/// refuses a start in the past), caches off so that is seen.
async fn past_events_come_newest_first_and_upcoming_ones_have_not_started(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("cache.enabled", "false")]).await;
    let (ada, bob) = (app.user().await, app.user().await);
    let mut ids = Vec::new();
    for who in [&ada, &ada, &ada, &ada, &bob] {
        let event = json_of(
            app.post("/api/events", Some(&who.access_token), event_body(5))
                .await,
            StatusCode::CREATED,
        )
        .await;
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    // ids[0..3] started 3, 2 and 1 days ago (bob's too, 1 day ago); ids[3] is upcoming.
    let db = app.events_database_url().to_owned();
    for (id, days) in [(&ids[0], 3), (&ids[1], 2), (&ids[2], 1), (&ids[4], 1)] {
        let starts = (Utc::now() - Duration::days(days))
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f");
        crate::helpers::sql_execute(
            &db,
            &format!("UPDATE events SET starts_at = '{starts}' WHERE id = '{id}'"),
        );
    }
    let listed = |query: String| {
        let app = &app;
        async move {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/events?{query}&limit=1&cursor={c}"),
                    None => format!("/api/events?{query}&limit=1"),
                };
                let page = json_of(app.get(&path, None).await, StatusCode::OK).await;
                all.extend(
                    page["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["id"].as_str().unwrap().to_owned()),
                );
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return all,
                }
            }
        }
    };
    let ada_id = &ada.id;
    assert_eq!(
        listed(format!("when=past&organizer_id={ada_id}")).await,
        [ids[2].clone(), ids[1].clone(), ids[0].clone()],
        "newest first"
    );
    assert_eq!(
        listed(format!("when=upcoming&organizer_id={ada_id}")).await,
        [ids[3].clone()]
    );
    assert_eq!(
        listed(format!("organizer_id={ada_id}")).await,
        [
            ids[0].clone(),
            ids[1].clone(),
            ids[2].clone(),
            ids[3].clone()
        ],
        "every event, earliest first"
    );
    let past = listed("when=past".to_owned()).await;
    assert_eq!(past.len(), 4);
    assert!(
        past[..2].contains(&ids[2]) && past[..2].contains(&ids[4]) && past[3] == ids[0],
        "{past:?}"
    );
    let from = (Utc::now() - Duration::hours(60))
        .to_rfc3339()
        .replace('+', "%2B");
    assert_eq!(
        listed(format!("when=past&organizer_id={ada_id}&from={from}")).await,
        [ids[2].clone(), ids[1].clone()]
    );
    problem(
        app.get("/api/events?when=later", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

/// Events stored before search existed (no search text, no index row; made so with SQL), one
/// of them with nothing to find it by, are indexed when the module starts (in the background):
/// after a restart `q` finds every one, and none is left to index.
async fn events_from_before_search_are_found_after_a_restart(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let mut made = Vec::new();
    for i in 0..12 {
        let mut body = event_body(5);
        let title = if i == 3 {
            "!!!".to_owned()
        } else {
            format!("Vintage {i}")
        };
        crate::helpers::merge(&mut body, json!({"title": title}));
        let event = json_of(
            app.post("/api/events", Some(&ada.access_token), body).await,
            StatusCode::CREATED,
        )
        .await;
        made.push(event["id"].as_str().unwrap().to_owned());
    }
    let db = app.events_database_url().to_owned();
    crate::helpers::sql_execute(&db, "UPDATE events SET search_text = NULL");
    crate::helpers::sql_execute(&db, "DELETE FROM event_words");
    if db.starts_with("sqlite://") {
        crate::helpers::sql_execute(&db, "DELETE FROM events_search");
    }
    app.restart(&[("cache.enabled", "false")]).await;
    // Indexed in the background: served meanwhile, every one found shortly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = json_of(
            app.get("/api/events?q=vint&limit=100", None).await,
            StatusCode::OK,
        )
        .await;
        let n = found["items"].as_array().unwrap().len();
        if n == 11 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of 11 events found again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        crate::helpers::sql_number(
            &db,
            "SELECT COUNT(*) AS n FROM events WHERE search_text IS NULL"
        ),
        0,
        "the one without words is marked indexed too"
    );
}

/// A word few events have, behind more events than a search reads in order before it turns to
/// the words' own lists: found there, and after an edit found by its new words at its new start
/// only (a `from` between the old start and the new one finds it; the old word, nothing).
async fn a_rare_word_is_found_where_its_event_moved(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let create = |title: String, days: i64| {
        let (app, token) = (&app, ada.access_token.clone());
        async move {
            let mut body = event_body(5);
            let starts = Utc::now() + Duration::days(days);
            crate::helpers::merge(
                &mut body,
                json!({"title": title, "starts_at": starts.to_rfc3339(),
                       "ends_at": (starts + Duration::hours(1)).to_rfc3339()}),
            );
            let event = json_of(
                app.post("/api/events", Some(&token), body).await,
                StatusCode::CREATED,
            )
            .await;
            event["id"].as_str().unwrap().to_owned()
        }
    };
    // Seventy events first in the list: more than the first rows a page of five reads.
    for i in 0..70 {
        create(format!("Filler {i}"), 1).await;
    }
    let rare = create("Zanzibar nights".to_owned(), 30).await;
    create("Zanzibar sunrise".to_owned(), 40).await;
    let found = |query: String| {
        let app = &app;
        async move {
            let page = json_of(
                app.get(&format!("/api/events?limit=5&{query}"), None).await,
                StatusCode::OK,
            )
            .await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("q=zanz".into()).await,
        ["Zanzibar nights", "Zanzibar sunrise"]
    );
    let moved = Utc::now() + Duration::days(60);
    json_of(
        app.patch(
            &format!("/api/events/{rare}"),
            Some(&ada.access_token),
            json!({"title": "Quokka nights", "starts_at": moved.to_rfc3339(),
                   "ends_at": (moved + Duration::hours(1)).to_rfc3339()}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found("q=zanz".into()).await, ["Zanzibar sunrise"]);
    assert_eq!(found("q=nights".into()).await, ["Quokka nights"]);
    let db = app.events_database_url().to_owned();
    // Its word rows: those of its title, description, location and category, at its start.
    let listed = |db: &str| {
        let rows =
            format!("FROM event_words w JOIN events e ON e.id = w.event_id WHERE e.id = '{rare}'");
        let stale = format!("{rows} AND (w.starts_at <> e.starts_at OR w.word = 'zanzibar')");
        (
            crate::helpers::sql_number(db, &format!("SELECT COUNT(*) AS n {rows}")),
            crate::helpers::sql_number(db, &format!("SELECT COUNT(*) AS n {stale}")),
        )
    };
    assert_eq!(
        listed(&db),
        (7, 0),
        "the words of the old title and start are gone"
    );
    let between = (Utc::now() + Duration::days(50)).format("%Y-%m-%dT00:00:00Z");
    assert_eq!(
        found(format!("q=quok&from={between}")).await,
        ["Quokka nights"]
    );
    assert_eq!(
        found(format!("q=nigh&from={between}")).await,
        ["Quokka nights"]
    );
    // Moved again, its words unchanged: found at the new start, not the one before.
    let back = Utc::now() + Duration::days(20);
    json_of(
        app.patch(
            &format!("/api/events/{rare}"),
            Some(&ada.access_token),
            json!({"starts_at": back.to_rfc3339(), "ends_at": (back + Duration::hours(1)).to_rfc3339()}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        found(format!("q=quok&from={between}")).await,
        Vec::<String>::new()
    );
    let before = (Utc::now() + Duration::days(25)).format("%Y-%m-%dT00:00:00Z");
    assert_eq!(
        found(format!("q=quok&to={before}")).await,
        ["Quokka nights"]
    );
    assert_eq!(listed(&db), (7, 0));
    // Moved by SQL, as an older version would (its words left where they were): the event is
    // unlisted, never answered from the rows it left, and listed again by the next start.
    crate::helpers::sql_execute(
        &db,
        &format!(
            "UPDATE events SET starts_at = (SELECT starts_at FROM events \
             WHERE title = 'Zanzibar sunrise') WHERE id = '{rare}'"
        ),
    );
    let unlisted =
        format!("SELECT COUNT(*) AS n FROM events WHERE id = '{rare}' AND words_listed IS NULL");
    assert_eq!(crate::helpers::sql_number(&db, &unlisted), 1);
    let meanwhile = found("q=quok".into()).await;
    assert!(
        meanwhile.is_empty() || meanwhile == ["Quokka nights"],
        "{meanwhile:?}"
    );
    let mut app = app;
    app.restart(&[("cache.enabled", "false")]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while crate::helpers::sql_number(&db, &unlisted) == 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "listed again after a restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let page = json_of(
        app.get("/api/events?limit=5&q=quok", None).await,
        StatusCode::OK,
    )
    .await;
    let titles: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["title"])
        .collect();
    assert_eq!(titles, [&json!("Quokka nights")]);
}

/// How many events a search for `q` finds on its first page of five.
async fn hits(app: &TestApp, q: &str) -> usize {
    let page = json_of(
        app.get(&format!("/api/events?limit=5&q={q}"), None).await,
        StatusCode::OK,
    )
    .await;
    page["items"].as_array().unwrap().len()
}

/// Invisible format characters (a soft hyphen, a word joiner, a byte order mark) inside a word
/// are dropped, never split at: `zorblat` finds "Zor\u{AD}blat", `blat` does not. Events indexed
/// by the rule before (which split there) are indexed again once the migration has run, their
/// old words' rows gone. Before: `blat` found it and `zorblat` did not.
async fn an_invisible_character_inside_a_word_keeps_it_one_word(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    // Seventy events first in the list: a search for its words reads their lists.
    for _ in 0..70 {
        app.event(&ada, 5, json!({"title": "Filler"})).await;
    }
    let mut body = event_body(5);
    let starts = Utc::now() + Duration::days(30);
    crate::helpers::merge(
        &mut body,
        json!({"title": "Zor\u{AD}blat night", "description": "Ham\u{2060}burg \u{FEFF}Quux",
               "starts_at": starts.to_rfc3339(),
               "ends_at": (starts + Duration::hours(1)).to_rfc3339()}),
    );
    let event = json_of(
        app.post("/api/events", Some(&ada.access_token), body).await,
        StatusCode::CREATED,
    )
    .await;
    let id = event["id"].as_str().unwrap().to_owned();
    app.restart(&[("cache.enabled", "false")]).await;
    let each_word = ["zorblat", "zor%C2%ADbl", "hamburg", "quux", "zor"];
    for q in each_word {
        assert_eq!(hits(&app, q).await, 1, "{q}");
    }
    for q in ["blat", "burg"] {
        assert_eq!(hits(&app, q).await, 0, "{q}");
    }

    // Indexed as the rule before did, words and all.
    let db = app.events_database_url().to_owned();
    let old_text = "zor blat night ham burg quux";
    crate::helpers::sql_execute(
        &db,
        &format!(
            "UPDATE events SET search_text = '{old_text}', words_listed = words_listed + 1 \
             WHERE id = '{id}'"
        ),
    );
    crate::helpers::sql_execute(
        &db,
        &format!("DELETE FROM event_words WHERE event_id = '{id}'"),
    );
    let old_words = old_text
        .split(' ')
        .map(|w| format!("SELECT '{w}' AS word"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    crate::helpers::sql_execute(
        &db,
        &format!(
            "INSERT INTO event_words (word, starts_at, event_id) \
             SELECT w.word, e.starts_at, e.id FROM events e, ({old_words}) w WHERE e.id = '{id}'"
        ),
    );
    if db.starts_with("sqlite://") {
        crate::helpers::sql_execute(
            &db,
            &format!("UPDATE events_search SET search_text = '{old_text}' WHERE event_id = '{id}'"),
        );
    }
    assert_eq!(hits(&app, "blat").await, 1, "the rule before, as it was");

    let dialect = if db.starts_with("sqlite://") {
        "sqlite"
    } else {
        "postgres"
    };
    let migration = std::fs::read_to_string(format!(
        "{}/migrations/events/{dialect}/2026-12-05-000100_search_drops_format_characters/up.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    crate::helpers::sql_execute(&db, &migration);
    app.restart(&[("cache.enabled", "false")]).await;
    let words_of = |word: &str| {
        crate::helpers::sql_number(
            &db,
            &format!(
                "SELECT COUNT(*) AS n FROM event_words WHERE event_id = '{id}' AND word = '{word}'"
            ),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while words_of("zorblat") == 0 {
        assert!(std::time::Instant::now() < deadline, "indexed again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (words_of("blat"), words_of("burg")),
        (0, 0),
        "the old words' rows"
    );
    for q in each_word {
        assert_eq!(hits(&app, q).await, 1, "{q}");
    }
    for q in ["blat", "burg"] {
        assert_eq!(hits(&app, q).await, 0, "{q}");
    }
}
