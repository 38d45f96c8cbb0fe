//! Faults of the multi-process topology, through the real binaries: a dead users service, a
//! dead events instance behind the gateway, a stopped broker during an account deletion,
//! and the internal API's guard. They need a multi-process deployment, so under the monolith
//! they say so and pass without running.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{Backend, TestApp, json_of, problem},
    processes::PrivateBroker,
};

crate::backend_tests!(
    split:
    with_the_users_service_down_events_stay_readable_and_user_routes_fail_fast,
    killing_one_of_two_events_instances_loses_no_request,
    a_stopped_broker_delays_the_deletion_cascade_and_loses_nothing,
    internal_endpoints_need_the_credential_and_are_not_routed_by_the_gateway,
    a_running_events_service_learns_a_rotated_signing_key,
);

async fn with_the_users_service_down_events_stay_readable_and_user_routes_fail_fast(
    backend: Backend,
) {
    let mut app = TestApp::spawn(backend).await;
    let (ada, bob) = (app.user_named("Ada").await, app.user().await);
    let event = app.event(&ada, 1, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();

    app.processes().kill("users").await;
    // Reads keep answering; the names are simply missing.
    let read = json_of(
        app.get(&format!("/api/events/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["organizer"]["id"], ada.id);
    assert_eq!(read["organizer"]["name"], serde_json::Value::Null);
    json_of(app.get("/api/events", None).await, StatusCode::OK).await;
    // Registering needs no users service: the events service verifies tokens itself.
    json_of(
        app.post(
            &format!("/api/events/{id}/registrations"),
            Some(&bob.access_token),
            json!({}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    // User routes answer 503 with Retry-After, well within the call timeout.
    let started = Instant::now();
    let response = app.get("/api/users/me", Some(&ada.access_token)).await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    problem(
        app.login(&ada.email, &ada.password).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    eprintln!(
        "FIGURE users down: two 503 answers in {} ms",
        started.elapsed().as_millis()
    );

    // Back up, without touching the other processes.
    app.processes().spawn("users");
    app.processes().wait_ready("users").await;
    app.eventually("user routes recover", || async {
        app.get("/api/users/me", Some(&ada.access_token))
            .await
            .status()
            == StatusCode::OK
    })
    .await;
    let read = json_of(
        app.get(&format!("/api/events/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["organizer"]["name"], "Ada");
}

async fn killing_one_of_two_events_instances_loses_no_request(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    app.processes().balance_two_events_instances().await;

    let id = app.event_id(&ada, 500).await;
    let users = futures_util::future::join_all((0..40).map(|_| app.user())).await;
    app.processes().kill("events").await;
    // Right after the kill, before any health check noticed: every request still succeeds,
    // reads and registrations alike (a refused connection never reached the dead instance).
    let path = format!("/api/events/{id}/registrations");
    for (i, user) in users.iter().enumerate() {
        json_of(
            app.get(&format!("/api/events/{id}"), None).await,
            StatusCode::OK,
        )
        .await;
        let registration = json_of(
            app.post(&path, Some(&user.access_token), json!({})).await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(registration["status"], "confirmed", "request {i}");
    }
    let event = json_of(
        app.get(&format!("/api/events/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(event["seats_taken"], 40);
}

/// The broker stops while every process keeps running: an account deletion still succeeds, and
/// once the broker is back the publisher and the consumer reconnect by themselves and the cascade
/// happens, exactly once.
async fn a_stopped_broker_delays_the_deletion_cascade_and_loses_nothing(backend: Backend) {
    let mut broker = PrivateBroker::start().await;
    let app = TestApp::spawn_with(backend, &[("nats.url", &broker.url())]).await;
    let (ada, bob, carol) = (
        app.user_named("Ada").await,
        app.user().await,
        app.user().await,
    );
    let adas = app.event_id(&ada, 5).await;
    let carols = app.event_id(&carol, 1).await;
    let path = format!("/api/events/{carols}/registrations");
    for user in [&ada, &bob] {
        json_of(
            app.post(&path, Some(&user.access_token), json!({})).await,
            StatusCode::CREATED,
        )
        .await;
    }

    broker.stop().await;
    let started = Instant::now();
    let response = app
        .request(
            reqwest::Method::DELETE,
            "/api/users/me",
            Some(&ada.access_token),
            Some(json!({"current_password": ada.password})),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "deletion must not depend on the broker"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "deletion waited on the broker"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let event = json_of(
        app.get(&format!("/api/events/{adas}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        event["status"], "scheduled",
        "nothing can have been delivered yet"
    );

    broker.restart().await;
    let back = Instant::now();
    app.eventually("Ada's event is cancelled", || async {
        json_of(
            app.get(&format!("/api/events/{adas}"), None).await,
            StatusCode::OK,
        )
        .await["status"]
            == "cancelled"
    })
    .await;
    eprintln!(
        "FIGURE broker outage: cascade applied {} ms after the broker came back",
        back.elapsed().as_millis()
    );
    assert_eq!(app.seat_counts(&carols).await, (1, 0));
    let attendees = app
        .walk(
            &format!("/api/events/{carols}/registrations"),
            Some(&carol.access_token),
        )
        .await;
    assert_eq!(attendees.len(), 1);
    assert_eq!(attendees[0]["user"]["id"], bob.id);
    assert_eq!(attendees[0]["status"], "confirmed");
}

async fn internal_endpoints_need_the_credential_and_are_not_routed_by_the_gateway(
    backend: Backend,
) {
    let mut app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let users = app.processes().address("users");
    // The arguments of `UsersApi::public_profiles(ids)`, as the kit's client sends them.
    let body = json!([[ada.id]]);
    let refused = |response: reqwest::Response, status: StatusCode| async move {
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    };
    refused(
        app.client
            .post(format!("{users}/internal/users/public_profiles"))
            .json(&body)
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let wrong = app
        .client
        .post(format!("{users}/internal/users/public_profiles"))
        .header("x-service-credential", "guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    refused(wrong, StatusCode::UNAUTHORIZED).await;
    let right = app
        .client
        .post(format!("{users}/internal/users/public_profiles"))
        .header("x-service-credential", "test-service-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    let profiles = json_of(right, StatusCode::OK).await;
    assert_eq!(profiles[0]["id"], ada.id);
    // Through the gateway, the internal API does not exist, credential or not.
    let via_gateway = app
        .client
        .post(app.url("/internal/users/public_profiles"))
        .header("x-service-credential", "test-service-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(via_gateway, StatusCode::NOT_FOUND).await;
}

/// The users service alone restarts with a new signing key (the old one retired): the events
/// service, still running with the old key set cached, refetches it for the new key id.
async fn a_running_events_service_learns_a_rotated_signing_key(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mine = "/api/users/me/registrations";
    let ada = app.user().await;
    json_of(app.get(mine, Some(&ada.access_token)).await, StatusCode::OK).await;

    let processes = app.processes();
    let old_key = processes.setting("users", "auth.signing_key_path").unwrap();
    let new_key = format!("{old_key}.next");
    processes.set("users", "auth.signing_key_path", &new_key);
    processes.set("users", "auth.retired_signing_key_paths", &old_key);
    processes.kill("users").await;
    processes.spawn("users");
    processes.wait_ready("users").await;

    let bob = app.user().await;
    let started = Instant::now();
    app.eventually("the events service accepts the new key", || async {
        app.get(mine, Some(&bob.access_token)).await.status() == StatusCode::OK
    })
    .await;
    eprintln!(
        "FIGURE key rotation: new tokens accepted by the events service after {} ms",
        started.elapsed().as_millis()
    );
    for token in [&ada.access_token, &bob.access_token] {
        json_of(app.get(mine, Some(token)).await, StatusCode::OK).await;
        json_of(app.get("/api/users/me", Some(token)).await, StatusCode::OK).await;
    }
}
