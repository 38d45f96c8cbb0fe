//! The caller's account, public profiles, admin listing and deletion, and the deletion cascade
//! into the events module through the outbox.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, json_of, problem};

crate::backend_tests!(
    me_returns_the_callers_account,
    changing_the_name_needs_the_current_password,
    changing_the_password_revokes_every_refresh_token,
    public_profiles_show_only_id_and_name,
    admins_list_users_page_by_page_and_members_may_not,
    deleting_an_account_cascades_into_events,
    admins_delete_accounts_with_the_same_cascade,
    a_deletion_committed_before_a_crash_is_delivered_after_restart,
    emails_that_look_the_same_are_one_account,
);

/// Width, case folding, composed letters and the domain's IDNA form: one account, `409` for the
/// second spelling, and every spelling logs in. Invisible characters are refused (before, each
/// of these made an account of its own).
async fn emails_that_look_the_same_are_one_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let password = "correct horse battery";
    let spellings: &[&[&str]] = &[
        &[
            "ada@example.com",
            "ＡＤＡ@ｅｘａｍｐｌｅ.ｃｏｍ",
            "Ada@EXAMPLE.com",
        ],
        &[
            "josé@example.com",
            "jose\u{301}@example.com",
            "JOSÉ@example.com",
        ],
        &[
            "οδυσσευς@example.com",
            "ΟΔΥΣΣΕΥΣ@example.com",
            "οδυσσευσ@example.com",
        ],
        &["bob@bücher.de", "bob@xn--bcher-kva.de", "bob@BÜCHER.DE"],
    ];
    for same in spellings {
        let created = json_of(
            app.register(same[0], password, "Same").await,
            StatusCode::CREATED,
        )
        .await;
        for other in &same[1..] {
            problem(
                app.register(other, password, "Same").await,
                StatusCode::CONFLICT,
            )
            .await;
            let tokens = json_of(app.login(other, password).await, StatusCode::OK).await;
            let me = json_of(
                app.get("/api/users/me", tokens["access_token"].as_str())
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(me["id"], created["id"], "{other}");
        }
    }
    let bob = json_of(app.login("bob@bücher.de", password).await, StatusCode::OK).await;
    let me = json_of(
        app.get("/api/users/me", bob["access_token"].as_str()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["email"], "bob@xn--bcher-kva.de");
    for hidden in [
        "ada\u{200b}@example.com",
        "\u{202e}ada@example.com",
        "ada@exam\u{200d}ple.com",
    ] {
        let refused = problem(
            app.register(hidden, password, "Hidden").await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], "email", "{hidden:?}");
    }
}

async fn me_returns_the_callers_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user_named("Ada").await;
    let me = json_of(
        app.get("/api/users/me", Some(&user.access_token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["id"], user.id);
    assert_eq!(me["email"], user.email);
    assert_eq!(me["name"], "Ada");
    assert_eq!(me["role"], "member");
}

async fn changing_the_name_needs_the_current_password(backend: Backend) {
    // Cached entries live a minute: a stale profile would show, not age out.
    let app = TestApp::spawn_with(backend, &[("cache.ttl_ms", "60000")]).await;
    let user = app.user().await;
    let token = Some(user.access_token.as_str());
    let body = app
        .expect_problem(
            Method::PATCH,
            "/api/users/me",
            Some(&user),
            json!({"name": "New", "current_password": "wrong-password"}),
            StatusCode::FORBIDDEN,
        )
        .await;
    assert_eq!(body["type"], "urn:rsvp:problem:wrong-current-password");
    app.expect_problem(
        Method::PATCH,
        "/api/users/me",
        Some(&user),
        json!({"name": "New"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    app.expect_problem(
        Method::PATCH,
        "/api/users/me",
        Some(&user),
        json!({"name": " ", "current_password": user.password}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Read (and so cached) before the rename.
    let before = json_of(app.get("/api/users/me", token).await, StatusCode::OK).await;
    assert_ne!(before["name"], "Renamed");
    let me = json_of(
        app.patch(
            "/api/users/me",
            token,
            json!({"name": "  Renamed ", "current_password": user.password}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["name"], "Renamed");
    app.invalidated("the renamed account in /api/users/me", || async {
        json_of(app.get("/api/users/me", token).await, StatusCode::OK).await == me
    })
    .await;
    let profile = json_of(
        app.get(&format!("/api/users/{}", user.id), token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile["name"], "Renamed");
}

async fn changing_the_password_revokes_every_refresh_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    let second_session =
        json_of(app.login(&user.email, &user.password).await, StatusCode::OK).await;
    let token = Some(user.access_token.as_str());
    app.expect_problem(
        Method::PATCH,
        "/api/users/me",
        Some(&user),
        json!({"password": "short", "current_password": user.password}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    json_of(
        app.patch(
            "/api/users/me",
            token,
            json!({"password": "a brand new password", "current_password": user.password}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    for refresh in [
        &user.refresh_token,
        second_session["refresh_token"].as_str().unwrap(),
    ] {
        problem(
            app.post("/api/auth/refresh", None, json!({"refresh_token": refresh}))
                .await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    problem(
        app.login(&user.email, &user.password).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    json_of(
        app.login(&user.email, "a brand new password").await,
        StatusCode::OK,
    )
    .await;
}

async fn public_profiles_show_only_id_and_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob) = (app.user_named("Ada").await, app.user().await);
    let profile = json_of(
        app.get(&format!("/api/users/{}", ada.id), Some(&bob.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile, json!({"id": ada.id, "name": "Ada"}));
    problem(
        app.get(&format!("/api/users/{}", ada.id), None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.get(
            &format!("/api/users/{}", uuid::Uuid::new_v4()),
            Some(&bob.access_token),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/users/not-a-uuid", Some(&bob.access_token))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

async fn admins_list_users_page_by_page_and_members_may_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let member = app.user().await;
    for i in 0..11 {
        json_of(
            app.register(
                &format!("person{i}@example.com"),
                "password1",
                &format!("P{i}"),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    }
    let admin = app.admin().await;
    problem(
        app.get("/api/users", Some(&member.access_token)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(app.get("/api/users", None).await, StatusCode::UNAUTHORIZED).await;

    let all = app
        .walk("/api/users?limit=4", Some(&admin.access_token))
        .await;
    assert_eq!(all.len(), 13);
    let mut ids: Vec<_> = all
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 13, "a page repeated a user");
    assert!(all.iter().any(|u| u["role"] == "admin"));

    let found = json_of(
        app.get(
            "/api/users?email=PERSON3@example.com",
            Some(&admin.access_token),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["name"], "P3");
    assert_eq!(found["next_cursor"], serde_json::Value::Null);
    problem(
        app.get("/api/users?limit=0", Some(&admin.access_token))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        app.get("/api/users?cursor=bogus", Some(&admin.access_token))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

/// Ada organises one event and holds a seat at another with Bob waiting behind her.
async fn cascade_scene(
    app: &TestApp,
) -> (
    crate::helpers::TestUser,
    crate::helpers::TestUser,
    String,
    String,
) {
    let (ada, bob, carol) = (
        app.user_named("Ada").await,
        app.user_named("Bob").await,
        app.user_named("Carol").await,
    );
    let adas_event = app.event_id(&ada, 10).await;
    let carols_event = app.event_id(&carol, 1).await;
    let path = format!("/api/events/{carols_event}/registrations");
    json_of(
        app.post(&path, Some(&ada.access_token), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    let bob_reg = json_of(
        app.post(&path, Some(&bob.access_token), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(bob_reg["status"], "waitlisted");
    json_of(
        app.post(
            &format!("/api/events/{adas_event}/registrations"),
            Some(&bob.access_token),
            json!({}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    (ada, bob, adas_event, carols_event)
}

async fn assert_cascaded(
    app: &TestApp,
    bob: &crate::helpers::TestUser,
    adas_event: &str,
    carols_event: &str,
) {
    app.eventually("Ada's event is cancelled", || async {
        let event = json_of(
            app.get(&format!("/api/events/{adas_event}"), None).await,
            StatusCode::OK,
        )
        .await;
        event["status"] == "cancelled"
    })
    .await;
    assert_eq!(app.seat_counts(carols_event).await, (1, 0));
    let mine = json_of(
        app.get("/api/users/me/registrations", Some(&bob.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    let status_at_carols = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["event"]["id"] == carols_event)
        .unwrap()["status"]
        .clone();
    assert_eq!(status_at_carols, "confirmed", "Bob was not promoted");
    // Ada's cancelled event stays readable and is listed under status=cancelled only.
    let scheduled = app.walk("/api/events", None).await;
    assert!(scheduled.iter().all(|e| e["id"] != adas_event));
    let cancelled = app.walk("/api/events?status=cancelled", None).await;
    assert!(cancelled.iter().any(|e| e["id"] == adas_event));
}

async fn deleting_an_account_cascades_into_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob, adas_event, carols_event) = cascade_scene(&app).await;
    let token = Some(ada.access_token.as_str());
    let delete = |body| app.request(reqwest::Method::DELETE, "/api/users/me", token, Some(body));
    problem(
        delete(json!({"current_password": "wrong password"})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(delete(json!({})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        delete(json!({"current_password": ada.password}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    assert_cascaded(&app, &bob, &adas_event, &carols_event).await;
    // The account is gone: its token and its refresh token no longer work, nor does its login.
    problem(
        app.get("/api/users/me", token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post("/api/events", token, crate::helpers::event_body(5))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh_token}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.login(&ada.email, &ada.password).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.get(&format!("/api/users/{}", ada.id), Some(&bob.access_token))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The organiser's name is gone with the account.
    let event = json_of(
        app.get(&format!("/api/events/{adas_event}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(event["organizer"], json!({"id": ada.id, "name": null}));
}

async fn admins_delete_accounts_with_the_same_cascade(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob, adas_event, carols_event) = cascade_scene(&app).await;
    let admin = app.admin().await;
    problem(
        app.delete(&format!("/api/users/{}", ada.id), Some(&bob.access_token))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        app.delete(&format!("/api/users/{}", ada.id), Some(&admin.access_token))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    problem(
        app.delete(&format!("/api/users/{}", ada.id), Some(&admin.access_token))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_cascaded(&app, &bob, &adas_event, &carols_event).await;
}

async fn a_deletion_committed_before_a_crash_is_delivered_after_restart(backend: Backend) {
    // First life: the relay never runs, as if the process died right after the commit.
    let mut app = TestApp::spawn_with(backend, &[("outbox.relay_enabled", "false")]).await;
    let (ada, bob, adas_event, carols_event) = cascade_scene(&app).await;
    let response = app
        .request(
            reqwest::Method::DELETE,
            "/api/users/me",
            Some(&ada.access_token),
            Some(json!({"current_password": ada.password})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let event = json_of(
        app.get(&format!("/api/events/{adas_event}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(event["status"], "scheduled", "delivered without a relay?");

    // Second life on the same database: the relay finds the pending event and delivers it.
    app.restart(&[("outbox.relay_enabled", "true")]).await;
    assert_cascaded(&app, &bob, &adas_event, &carols_event).await;
}
