//! The read caches are never wrong: every test reads first (so the answer is cached), writes,
//! and reads again. Each write kind has its own test, so removing one invalidation makes one
//! test fail. Within one process a write is read at once; a change that crosses processes
//! (split: a rename seen by the events service, a write seen by another events instance) is
//! read within a bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, Topology, json_of, topology};

crate::backend_tests!(
    a_new_event_appears_on_a_list_read_before_it,
    an_edit_shows_in_the_detail_and_the_lists_read_before_it,
    a_cancellation_shows_in_the_detail_and_the_lists_at_once,
    sign_ups_withdrawals_and_promotions_show_in_the_counts_at_once,
    a_rename_shows_as_the_organisers_name,
    a_deleted_organisers_name_goes,
    a_deleted_attendees_seat_frees_in_counts_read_before,
    concurrent_writers_each_read_their_own_write,
    the_attendee_list_read_before_a_change_shows_it,
    a_cached_attendee_list_is_still_only_for_the_organiser,
    what_services_tell_the_gateway_never_reaches_a_client,
);

async fn get(app: &TestApp, path: &str) -> Value {
    json_of(app.get(path, None).await, StatusCode::OK).await
}

/// The list item with `id`, if the page at `path` has it.
async fn listed(app: &TestApp, path: &str, id: &str) -> Option<Value> {
    let page = get(app, path).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
}

/// Reads `path` until `check` holds: at once in one process, within a few seconds when the
/// change crosses processes (the TTL is a minute in these tests, so this is invalidation).
async fn read_until(app: &TestApp, path: &str, what: &str, check: impl Fn(&Value) -> bool) {
    app.invalidated(what, || async { check(&get(app, path).await) })
        .await;
}

async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, &[("cache.ttl_ms", "60000")]).await
}

async fn a_new_event_appears_on_a_list_read_before_it(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user().await;
    let first = app.event_id(&ada, 5).await;
    let list = format!("/api/events?organizer_id={}", ada.id);
    assert_eq!(get(&app, &list).await["items"].as_array().unwrap().len(), 1);
    assert_eq!(get(&app, "/api/events").await["items"][0]["id"], first);

    let second = app.event_id(&ada, 5).await;
    assert!(listed(&app, &list, &second).await.is_some());
    assert!(listed(&app, "/api/events", &second).await.is_some());
}

async fn an_edit_shows_in_the_detail_and_the_lists_read_before_it(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 5).await;
    let detail = format!("/api/events/{id}");
    let by_category = "/api/events?category=Jazz";
    assert_eq!(get(&app, &detail).await["title"], "Rust meetup");
    assert!(listed(&app, "/api/events", &id).await.is_some());
    assert!(listed(&app, by_category, &id).await.is_none());

    let patch = json!({"title": "Renamed meetup", "category": "jazz"});
    json_of(
        app.patch(&detail, Some(&ada.access_token), patch).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(get(&app, &detail).await["title"], "Renamed meetup");
    let item = listed(&app, "/api/events", &id).await.unwrap();
    assert_eq!(item["title"], "Renamed meetup");
    assert!(listed(&app, by_category, &id).await.is_some());
}

async fn a_cancellation_shows_in_the_detail_and_the_lists_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 5).await;
    let detail = format!("/api/events/{id}");
    let cancelled = "/api/events?status=cancelled";
    assert_eq!(get(&app, &detail).await["status"], "scheduled");
    assert!(listed(&app, "/api/events", &id).await.is_some());
    assert!(listed(&app, cancelled, &id).await.is_none());

    let response = app.delete(&detail, Some(&ada.access_token)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&app, &detail).await["status"], "cancelled");
    assert!(listed(&app, "/api/events", &id).await.is_none());
    assert!(listed(&app, cancelled, &id).await.is_some());
}

async fn sign_ups_withdrawals_and_promotions_show_in_the_counts_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 1).await;
    let counts = |event: &Value| {
        (
            event["seats_taken"].clone(),
            event["waitlist_length"].clone(),
        )
    };
    let list = format!("/api/events?organizer_id={}", ada.id);
    let expect = |seats: i64, waiting: i64| {
        let (app, id, list) = (&app, &id, &list);
        async move {
            assert_eq!(app.seat_counts(id).await, (seats, waiting), "detail");
            let item = listed(app, list, id).await.unwrap();
            assert_eq!(counts(&item), (json!(seats), json!(waiting)), "list");
        }
    };
    expect(0, 0).await;
    let registrations = format!("/api/events/{id}/registrations");
    let (bob, carol) = (app.user().await, app.user().await);
    for (user, seats, waiting) in [(&bob, 1, 0), (&carol, 1, 1)] {
        let answer = app
            .post(&registrations, Some(&user.access_token), json!({}))
            .await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        expect(seats, waiting).await;
    }
    // Bob withdraws: Carol is promoted in the same write.
    let mine = format!("{registrations}/me");
    let answer = app.delete(&mine, Some(&bob.access_token)).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    expect(1, 0).await;
    // A larger capacity promotes too.
    let dave = app.user().await;
    app.post(&registrations, Some(&dave.access_token), json!({}))
        .await;
    expect(1, 1).await;
    let detail = format!("/api/events/{id}");
    let patch = json!({"capacity": 2});
    json_of(
        app.patch(&detail, Some(&ada.access_token), patch).await,
        StatusCode::OK,
    )
    .await;
    expect(2, 0).await;
}

async fn rename(app: &TestApp, user: &TestUser, name: &str) {
    let body = json!({"name": name, "current_password": user.password});
    json_of(
        app.patch("/api/users/me", Some(&user.access_token), body)
            .await,
        StatusCode::OK,
    )
    .await;
}

async fn a_rename_shows_as_the_organisers_name(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user_named("Ada").await;
    let id = app.event_id(&ada, 5).await;
    let detail = format!("/api/events/{id}");
    let list = format!("/api/events?organizer_id={}", ada.id);
    assert_eq!(get(&app, &detail).await["organizer"]["name"], "Ada");
    assert_eq!(
        get(&app, &list).await["items"][0]["organizer"]["name"],
        "Ada"
    );

    rename(&app, &ada, "Ada Lovelace").await;
    let renamed = |v: &Value| v["organizer"]["name"] == "Ada Lovelace";
    read_until(&app, &detail, "detail", renamed).await;
    read_until(&app, &list, "list", |page| renamed(&page["items"][0])).await;
}

async fn delete_account(app: &TestApp, user: &TestUser) {
    let body = json!({"current_password": user.password});
    let answer = app
        .request(
            reqwest::Method::DELETE,
            "/api/users/me",
            Some(&user.access_token),
            Some(body),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
}

async fn a_deleted_organisers_name_goes(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user_named("Ada").await;
    let id = app.event_id(&ada, 5).await;
    let detail = format!("/api/events/{id}");
    assert_eq!(get(&app, &detail).await["organizer"]["name"], "Ada");

    delete_account(&app, &ada).await;
    read_until(&app, &detail, "detail", |v| {
        v["organizer"]["name"].is_null()
    })
    .await;
}

/// The `user.deleted` cascade arrives through the outbox, so later than the deletion's answer;
/// the counts read before it must still change (well within the minute-long TTL).
async fn a_deleted_attendees_seat_frees_in_counts_read_before(backend: Backend) {
    let app = spawn(backend).await;
    let (ada, bob, carol) = (app.user().await, app.user().await, app.user().await);
    let id = app.event_id(&ada, 1).await;
    let registrations = format!("/api/events/{id}/registrations");
    for user in [&bob, &carol] {
        let answer = app
            .post(&registrations, Some(&user.access_token), json!({}))
            .await;
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    assert_eq!(app.seat_counts(&id).await, (1, 1));

    delete_account(&app, &bob).await;
    app.eventually("Carol promoted to Bob's seat", || async {
        app.seat_counts(&id).await == (1, 0)
    })
    .await;
}

/// Writers register concurrently while readers keep the cache filled; after each registration
/// answered, its writer's read counts at least every registration answered before that read.
async fn concurrent_writers_each_read_their_own_write(backend: Backend) {
    let app = Arc::new(spawn(backend).await);
    let ada = app.user().await;
    let id = app.event_id(&ada, 1000).await;
    let users = futures_util::future::join_all((0..24).map(|_| app.user())).await;
    let answered = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (app, id, stop) = (app.clone(), id.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    app.seat_counts(&id).await;
                    get(&app, "/api/events").await;
                }
            })
        })
        .collect();
    let writers = users.into_iter().map(|user| {
        let (app, id, answered) = (app.clone(), id.clone(), answered.clone());
        async move {
            let path = format!("/api/events/{id}/registrations");
            let answer = app.post(&path, Some(&user.access_token), json!({})).await;
            assert_eq!(answer.status(), StatusCode::CREATED);
            answered.fetch_add(1, Ordering::SeqCst);
            let at_least = answered.load(Ordering::SeqCst);
            let (seats, _) = app.seat_counts(&id).await;
            assert!(
                seats >= at_least,
                "read {seats} seats after {at_least} answered"
            );
            let item = listed(&app, "/api/events", &id).await.unwrap();
            assert!(item["seats_taken"].as_i64().unwrap() >= at_least, "list");
        }
    });
    futures_util::future::join_all(writers).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(app.seat_counts(&id).await, (24, 0));
}

/// A service tells the split gateway what an answer depends on and what a write changed, in
/// headers of its own; the gateway takes them off, whatever the answer.
async fn what_services_tell_the_gateway_never_reaches_a_client(backend: Backend) {
    let app = spawn(backend).await;
    let (ada, bob) = (app.user_named("Ada").await, app.user().await);
    let id = app.event_id(&ada, 5).await;
    let registrations = format!("/api/events/{id}/registrations");
    let answers = [
        app.get(&format!("/api/events/{id}"), None).await,
        app.get(&format!("/api/events/{id}"), None).await,
        app.get("/api/events", None).await,
        app.get(&format!("/api/events?organizer_id={}", ada.id), None)
            .await,
        app.post(&registrations, Some(&bob.access_token), json!({}))
            .await,
        app.delete(&format!("{registrations}/me"), Some(&bob.access_token))
            .await,
        app.patch(
            "/api/users/me",
            Some(&ada.access_token),
            json!({"name": "Ada L", "current_password": ada.password}),
        )
        .await,
        app.get("/api/events/not-an-id", None).await,
    ];
    for answer in answers {
        assert!(answer.status().as_u16() < 500, "{}", answer.url());
        let internal: Vec<_> = answer
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("rsvp-"))
            .collect();
        assert!(internal.is_empty(), "{}: {internal:?}", answer.url());
    }
}

#[cfg(feature = "split")]
mod across_instances {
    use super::*;

    crate::backend_tests!(
        split: a_write_on_one_events_instance_is_read_on_another,
        the_gateway_answers_a_repeated_public_read_itself,
        a_write_through_one_gateway_is_read_through_another,
    );

    /// `rsvp_cache_lookups_total` of the gateway's answers, as `(hits, misses)`.
    async fn gateway_lookups(app: &TestApp) -> (u64, u64) {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        let count = |result: &str| {
            let series = format!(
                "rsvp_cache_lookups_total{{cache=\"gateway_answers\",result=\"{result}\"}} "
            );
            text.lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .map_or(0, |n| n.trim().parse().unwrap())
        };
        (count("hit"), count("miss"))
    }

    /// A public read asked again is answered by the gateway (counted as a hit, the same body,
    /// compressed alike), and the next write through it is read at once.
    async fn the_gateway_answers_a_repeated_public_read_itself(backend: Backend) {
        let app = spawn(backend).await;
        let (ada, bob) = (app.user_named("Ada").await, app.user().await);
        let id = app.event_id(&ada, 5).await;
        let detail = format!("/api/events/{id}");
        // An answer is not kept while the change it depends on settles (half a second).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let before = gateway_lookups(&app).await;
        let first = get(&app, &detail).await;
        let again = get(&app, &detail).await;
        assert_eq!(first, again);
        let after = gateway_lookups(&app).await;
        assert_eq!(after.0 - before.0, 1, "hits {before:?} -> {after:?}");
        assert_eq!(after.1 - before.1, 1, "misses {before:?} -> {after:?}");

        // A page worth compressing comes compressed from the gateway's own copy too.
        for _ in 0..12 {
            app.event_id(&ada, 5).await;
        }
        let list = format!("/api/events?organizer_id={}", ada.id);
        for _ in 0..2 {
            let answer = app
                .client
                .get(app.url(&list))
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.headers()["content-encoding"], "gzip");
            assert_eq!(answer.headers()["vary"], "accept-encoding");
        }

        let registrations = format!("{detail}/registrations");
        let answer = app
            .post(&registrations, Some(&bob.access_token), json!({}))
            .await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(get(&app, &detail).await["seats_taken"], 1);
        assert_eq!(listed(&app, &list, &id).await.unwrap()["seats_taken"], 1);
    }

    /// Two gateways in front of the same services: a write through the first is read through
    /// the second, whose copy goes when the change arrives over NATS.
    async fn a_write_through_one_gateway_is_read_through_another(backend: Backend) {
        let mut app = spawn(backend).await;
        let (ada, bob) = (app.user_named("Ada").await, app.user().await);
        let id = app.event_id(&ada, 5).await;
        let second = app.processes().spawn_extra("gateway", "gateway2");
        app.processes().wait_ready("gateway2").await;
        let detail = format!("{second}/api/events/{id}");
        let client = app.client.clone();
        for _ in 0..2 {
            let event: Value = client
                .get(&detail)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(event["seats_taken"], 0);
        }
        let path = format!("/api/events/{id}/registrations");
        let answer = app.post(&path, Some(&bob.access_token), json!({})).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        let took = until_changed(&client, &detail, |e| e["seats_taken"] == 1).await;
        rename(&app, &ada, "Ada Lovelace").await;
        let renamed = until_changed(&client, &detail, |e| {
            e["organizer"]["name"] == "Ada Lovelace"
        })
        .await;
        eprintln!("the other gateway saw a sign-up after {took:?}, a rename after {renamed:?}");
    }

    /// The slowest invalidation across instances seen, reported (the bound is a benchmark
    /// matter; the assertion only needs it well inside the minute-long TTL).
    async fn until_changed(
        client: &reqwest::Client,
        url: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let answer: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            if check(&answer) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{url} still {answer} after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Two events instances on one database: the gateway sends writes to the first, reads go
    /// straight to the second, whose caches hold the old answers until the change arrives
    /// over NATS.
    async fn a_write_on_one_events_instance_is_read_on_another(backend: Backend) {
        let mut app = spawn(backend).await;
        let ada = app.user_named("Ada").await;
        let bob = app.user().await;
        let id = app.event_id(&ada, 5).await;
        let second = app.processes().spawn_extra("events", "events2");
        app.processes().wait_ready("events2").await;
        let detail = format!("{second}/api/events/{id}");
        let list = format!("{second}/api/events?organizer_id={}", ada.id);
        let client = app.client.clone();
        let read = |url: String| {
            let client = client.clone();
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(read(detail.clone()).await["seats_taken"], 0);
        assert_eq!(read(list.clone()).await["items"][0]["title"], "Rust meetup");

        let mut took = Vec::new();
        let path = format!("/api/events/{id}/registrations");
        let answer = app.post(&path, Some(&bob.access_token), json!({})).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        took.push(until_changed(&client, &detail, |e| e["seats_taken"] == 1).await);

        let patch = json!({"title": "Moved meetup"});
        let answer = app
            .patch(&format!("/api/events/{id}"), Some(&ada.access_token), patch)
            .await;
        assert_eq!(answer.status(), StatusCode::OK);
        took.push(
            until_changed(&client, &list, |p| p["items"][0]["title"] == "Moved meetup").await,
        );

        rename(&app, &ada, "Ada Lovelace").await;
        took.push(
            until_changed(&client, &detail, |e| {
                e["organizer"]["name"] == "Ada Lovelace"
            })
            .await,
        );
        eprintln!("cross-instance invalidation: sign-up, edit, rename seen after {took:?}");
    }
}

/// The organiser's attendee list, as names and statuses.
async fn attendee_list(app: &TestApp, id: &str, organizer: &TestUser) -> Vec<(Value, Value)> {
    let path = format!("/api/events/{id}/registrations");
    let page = json_of(
        app.get(&path, Some(&organizer.access_token)).await,
        StatusCode::OK,
    )
    .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["user"]["name"].clone(), a["status"].clone()))
        .collect()
}

async fn the_attendee_list_read_before_a_change_shows_it(backend: Backend) {
    let app = spawn(backend).await;
    let ada = app.user().await;
    let id = app.event_id(&ada, 1).await;
    let (bob, carol) = (app.user_named("Bob").await, app.user_named("Carol").await);
    assert!(attendee_list(&app, &id, &ada).await.is_empty());
    let registrations = format!("/api/events/{id}/registrations");
    for user in [&bob, &carol] {
        let answer = app
            .post(&registrations, Some(&user.access_token), json!({}))
            .await;
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    assert_eq!(
        attendee_list(&app, &id, &ada).await,
        [
            (json!("Bob"), json!("confirmed")),
            (json!("Carol"), json!("waitlisted"))
        ]
    );
    let mine = format!("{registrations}/me");
    let answer = app.delete(&mine, Some(&bob.access_token)).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        attendee_list(&app, &id, &ada).await,
        [(json!("Carol"), json!("confirmed"))]
    );
    rename(&app, &carol, "Carol Shaw").await;
    let start = Instant::now();
    while attendee_list(&app, &id, &ada).await != [(json!("Carol Shaw"), json!("confirmed"))] {
        assert!(
            topology() != Topology::Monolith && start.elapsed() < Duration::from_secs(3),
            "the rename did not reach the attendee list"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A page cached for the organiser is not served to anyone else.
async fn a_cached_attendee_list_is_still_only_for_the_organiser(backend: Backend) {
    let app = spawn(backend).await;
    let (ada, mallory) = (app.user().await, app.user().await);
    let id = app.event_id(&ada, 5).await;
    attendee_list(&app, &id, &ada).await;
    let path = format!("/api/events/{id}/registrations");
    let answer = app.get(&path, Some(&mallory.access_token)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let answer = app.get(&path, None).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}
