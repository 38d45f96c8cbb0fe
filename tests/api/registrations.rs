//! Registrations: seats, the FIFO waitlist, promotion, attendee lists, and the capacity
//! invariant under concurrency.

use std::time::Instant;

use chrono::{Duration, Utc};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, json_of, problem};

crate::backend_tests!(
    seats_are_confirmed_then_waitlisted,
    registering_twice_or_for_a_closed_event_is_409,
    withdrawing_promotes_the_longest_waiting_registration,
    attendee_lists_page_in_registration_order_with_names,
    my_registrations_list_events_with_status,
    two_hundred_concurrent_registrations_fill_exactly_fifty_seats,
    a_bursts_waitlist_keeps_admission_order_with_positions,
);

async fn register(app: &TestApp, event: &str, user: &TestUser) -> Value {
    json_of(
        app.post(
            &format!("/api/events/{event}/registrations"),
            Some(&user.access_token),
            json!({}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

async fn seats_are_confirmed_then_waitlisted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 2).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let u = app.user().await;
        let reg = register(&app, &id, &u).await;
        assert_eq!(reg["event_id"], id);
        assert_eq!(reg["user_id"], u.id);
        assert!(reg["created_at"].is_string());
        statuses.push(reg["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        statuses,
        ["confirmed", "confirmed", "waitlisted", "waitlisted"]
    );
    assert_eq!(app.seat_counts(&id).await, (2, 2));
    problem(
        app.post(&format!("/api/events/{id}/registrations"), None, json!({}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.expect_problem(
        Method::POST,
        &format!("/api/events/{}/registrations", uuid::Uuid::new_v4()),
        Some(&ada),
        json!({}),
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn registering_twice_or_for_a_closed_event_is_409(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob) = (app.user().await, app.user().await);
    let id = app.event_id(&ada, 2).await;
    register(&app, &id, &bob).await;
    let body = app
        .expect_problem(
            Method::POST,
            &format!("/api/events/{id}/registrations"),
            Some(&bob),
            json!({}),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(body["type"], "urn:rsvp:problem:already-registered");

    let cancelled = app.event_id(&ada, 2).await;
    app.delete(&format!("/api/events/{cancelled}"), Some(&ada.access_token))
        .await;
    let body = app
        .expect_problem(
            Method::POST,
            &format!("/api/events/{cancelled}/registrations"),
            Some(&bob),
            json!({}),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(body["type"], "urn:rsvp:problem:registration-closed");

    let soon = Utc::now() + Duration::milliseconds(1500);
    let started = app.event(&ada, 2, json!({"starts_at": soon.to_rfc3339(), "ends_at": (soon + Duration::hours(1)).to_rfc3339()})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let body = problem(
        app.post(
            &format!(
                "/api/events/{}/registrations",
                started["id"].as_str().unwrap()
            ),
            Some(&bob.access_token),
            json!({}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("started"));
}

async fn withdrawing_promotes_the_longest_waiting_registration(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 1).await;
    let mut people = Vec::new();
    for _ in 0..3 {
        let u = app.user().await;
        register(&app, &id, &u).await;
        people.push(u);
    }
    let me = format!("/api/events/{id}/registrations/me");
    // A waitlisted person leaving frees no seat.
    assert_eq!(
        app.delete(&me, Some(&people[2].access_token))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // The confirmed person leaving promotes the oldest waiting one (people[1]).
    assert_eq!(
        app.delete(&me, Some(&people[0].access_token))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    problem(
        app.delete(&me, Some(&people[0].access_token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let attendees = app
        .walk(
            &format!("/api/events/{id}/registrations"),
            Some(&ada.access_token),
        )
        .await;
    assert_eq!(attendees.len(), 1);
    assert_eq!(attendees[0]["user"]["id"], people[1].id);
    assert_eq!(attendees[0]["status"], "confirmed");
    assert_eq!(app.seat_counts(&id).await, (1, 0));
    // Registering again after leaving is allowed, at the back of the line.
    let again = register(&app, &id, &people[0]).await;
    assert_eq!(again["status"], "waitlisted");
}

async fn attendee_lists_page_in_registration_order_with_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 5).await;
    let mut expected = Vec::new();
    for i in 0..8 {
        let u = app.user_named(&format!("Guest {i}")).await;
        register(&app, &id, &u).await;
        expected.push((u.id.clone(), format!("Guest {i}")));
    }
    let attendees = app
        .walk(
            &format!("/api/events/{id}/registrations?limit=3"),
            Some(&ada.access_token),
        )
        .await;
    let got: Vec<(String, String)> = attendees
        .iter()
        .map(|a| {
            (
                a["user"]["id"].as_str().unwrap().to_owned(),
                a["user"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        attendees
            .iter()
            .filter(|a| a["status"] == "waitlisted")
            .count(),
        3
    );
    problem(
        app.get(
            &format!("/api/events/{id}/registrations?limit=500"),
            Some(&ada.access_token),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get(
            &format!("/api/events/{}/registrations", uuid::Uuid::new_v4()),
            Some(&ada.access_token),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn my_registrations_list_events_with_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob, carol) = (
        app.user_named("Ada").await,
        app.user().await,
        app.user().await,
    );
    let small = app.event(&ada, 1, json!({"title": "Small"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let big = app.event(&ada, 10, json!({"title": "Big"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    register(&app, &small, &carol).await;
    register(&app, &small, &bob).await;
    register(&app, &big, &bob).await;
    let mine = app
        .walk(
            "/api/users/me/registrations?limit=1",
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0]["event"]["title"], "Small");
    assert_eq!(mine[0]["status"], "waitlisted");
    assert_eq!(mine[0]["event"]["organizer"]["name"], "Ada");
    assert_eq!(mine[1]["event"]["id"], big);
    assert_eq!(mine[1]["status"], "confirmed");
    problem(
        app.get("/api/users/me/registrations", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let none = json_of(
        app.get("/api/users/me/registrations", Some(&ada.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none, json!({"items": [], "next_cursor": null}));
}

/// Hundreds of requests at once, sent by this test process while it also serves them (the
/// monolith runs in process): on two busy cores a request's head can reach the server later
/// than the 5 s slow-client deadline, which these tests are not about (`edges` tests it).
const BURST: &[(&str, &str)] = &[
    ("database.max_connections", "16"),
    ("server.header_timeout_ms", "30000"),
];

async fn two_hundred_concurrent_registrations_fill_exactly_fifty_seats(backend: Backend) {
    let app = TestApp::spawn_with(backend, BURST).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 50).await;
    let users = join_all((0..200).map(|_| app.user())).await;

    let (join_path, leave_path) = (
        format!("/api/events/{id}/registrations"),
        format!("/api/events/{id}/registrations/me"),
    );
    let started = Instant::now();
    let responses = join_all(
        users
            .iter()
            .map(|u| app.post(&join_path, Some(&u.access_token), json!({}))),
    )
    .await;
    let elapsed = started.elapsed();
    let mut confirmed = 0;
    for response in responses {
        let reg = json_of(response, StatusCode::CREATED).await;
        if reg["status"] == "confirmed" {
            confirmed += 1;
        }
    }
    eprintln!(
        "FIGURE {backend:?}: 200 concurrent registrations took {} ms",
        elapsed.as_millis()
    );
    assert_eq!(confirmed, 50);
    assert_eq!(app.seat_counts(&id).await, (50, 150));

    // Now 30 confirmed people leave while 30 newcomers register, all at once: the seats stay
    // full, nobody waits beside a free seat and the counters match the rows.
    let attendees = app
        .walk(
            &format!("/api/events/{id}/registrations?limit=100"),
            Some(&ada.access_token),
        )
        .await;
    let confirmed_ids: Vec<&str> = attendees
        .iter()
        .filter(|a| a["status"] == "confirmed")
        .map(|a| a["user"]["id"].as_str().unwrap())
        .collect();
    let leaving: Vec<&TestUser> = users
        .iter()
        .filter(|u| confirmed_ids.contains(&u.id.as_str()))
        .take(30)
        .collect();
    let newcomers = join_all((0..30).map(|_| app.user())).await;
    let leave = leaving
        .iter()
        .map(|u| app.delete(&leave_path, Some(&u.access_token)));
    let join = newcomers
        .iter()
        .map(|u| app.post(&join_path, Some(&u.access_token), json!({})));
    let (left, joined) = futures_util::future::join(join_all(leave), join_all(join)).await;
    assert!(left.iter().all(|r| r.status() == StatusCode::NO_CONTENT));
    assert!(joined.iter().all(|r| r.status() == StatusCode::CREATED));

    let attendees = app
        .walk(
            &format!("/api/events/{id}/registrations?limit=100"),
            Some(&ada.access_token),
        )
        .await;
    let confirmed = attendees
        .iter()
        .filter(|a| a["status"] == "confirmed")
        .count();
    let waiting = attendees
        .iter()
        .filter(|a| a["status"] == "waitlisted")
        .count();
    assert_eq!((confirmed, waiting), (50, 150));
    assert_eq!(app.seat_counts(&id).await, (50, 150));
    // The waitlist is served first come, first served: every confirmed registration is older
    // than every waiting one.
    let last_confirmed = attendees
        .iter()
        .filter(|a| a["status"] == "confirmed")
        .map(|a| a["created_at"].as_str().unwrap().to_owned())
        .max()
        .unwrap();
    let first_waiting = attendees
        .iter()
        .filter(|a| a["status"] == "waitlisted")
        .map(|a| a["created_at"].as_str().unwrap().to_owned())
        .min()
        .unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&last_confirmed).unwrap()
            <= chrono::DateTime::parse_from_rfc3339(&first_waiting).unwrap(),
        "someone was promoted out of order"
    );
}

/// Arrival order is admission order under the event's lock, and `created_at` says it: after a
/// burst no waitlisted registration is older than a confirmed one, and the waitlist positions
/// count 1, 2, 3... in that order, in the answers and in each person's own list.
async fn a_bursts_waitlist_keeps_admission_order_with_positions(backend: Backend) {
    let app = TestApp::spawn_with(backend, BURST).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 40).await;
    let users = join_all((0..300).map(|_| app.user())).await;
    let join_path = format!("/api/events/{id}/registrations");
    let responses = join_all(
        users
            .iter()
            .map(|u| app.post(&join_path, Some(&u.access_token), json!({}))),
    )
    .await;
    let mut registrations = Vec::new();
    for response in responses {
        registrations.push(json_of(response, StatusCode::CREATED).await);
    }
    let time = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap()).unwrap()
    };
    let (confirmed, waiting): (Vec<&Value>, Vec<&Value>) = registrations
        .iter()
        .partition(|r| r["status"] == "confirmed");
    assert_eq!((confirmed.len(), waiting.len()), (40, 260));
    assert!(confirmed.iter().all(|r| r["position"].is_null()));
    let last_confirmed = confirmed.iter().map(|r| time(r)).max().unwrap();
    let inverted = waiting.iter().filter(|r| time(r) < last_confirmed).count();
    assert_eq!(
        inverted, 0,
        "waitlisted registrations older than a confirmed one"
    );
    // Positions 1..=260, ordered as the registrations were admitted.
    let mut by_position: Vec<&Value> = waiting.clone();
    by_position.sort_by_key(|r| r["position"].as_i64().unwrap());
    let positions: Vec<i64> = by_position
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=260).collect::<Vec<_>>());
    assert!(by_position.windows(2).all(|w| time(w[0]) <= time(w[1])));

    // Each person's own list says the same place; a withdrawal moves everyone behind up.
    let tenth = by_position[9]["user_id"].as_str().unwrap();
    let tenth = users.iter().find(|u| u.id == tenth).unwrap();
    let place = |user: &TestUser| {
        let app = &app;
        let token = user.access_token.clone();
        async move {
            let mine = json_of(
                app.get("/api/users/me/registrations", Some(&token)).await,
                StatusCode::OK,
            )
            .await;
            mine["items"][0]["position"].clone()
        }
    };
    assert_eq!(place(tenth).await, json!(10));
    let first = by_position[0]["user_id"].as_str().unwrap();
    let first = users.iter().find(|u| u.id == first).unwrap();
    let leave = app
        .delete(&format!("{join_path}/me"), Some(&first.access_token))
        .await;
    assert_eq!(leave.status(), StatusCode::NO_CONTENT);
    assert_eq!(place(tenth).await, json!(9));
    let seated = confirmed[0]["user_id"].as_str().unwrap();
    let seated = users.iter().find(|u| u.id == seated).unwrap();
    assert_eq!(place(seated).await, Value::Null);
}
