//! Requests that race each other: an account deletion against the writes it must not leave
//! behind, a refresh against every revocation, deletions against deletions, logins against a
//! deletion, several instances of the events module that must all learn of a deletion, and
//! searches racing the edits of what they find.
//! Each test makes the race happen many times and counts what broke the contract; the counts
//! are printed, so a run shows how close to the edge it came.

use std::{collections::HashSet, time::Duration};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, Topology, event_body, json_of, problem, sql_number, topology,
};

crate::backend_tests!(
    writes_racing_an_account_deletion_leave_nothing_behind,
    a_refresh_racing_a_revocation_never_outlives_it,
    concurrent_deletions_of_one_account_all_keep_it_deleted,
    logins_and_refreshes_racing_a_deletion_get_401_never_500,
    password_checks_share_the_limit_per_address_and_per_account,
    searches_racing_edits_of_their_event_find_it_once,
);

/// Statuses a write racing its account's deletion may get: done (then undone by the cascade),
/// or refused.
fn done_or_refused(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::CREATED | StatusCode::OK | StatusCode::UNAUTHORIZED
    )
}

async fn delete_me(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.request(
        Method::DELETE,
        "/api/users/me",
        Some(&user.access_token),
        Some(json!({"current_password": user.password})),
    )
    .await
}

/// Twenty sign-ups and three event creations sent around one `DELETE /api/users/me`, twelve
/// times: once the cascade ran, no registration and no scheduled event belongs to a deleted
/// account (before the check moved into the write's transaction: 5 of 240 left on PostgreSQL).
async fn writes_racing_an_account_deletion_leave_nothing_behind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app = &app;
    let organiser = app.user().await;
    let events: Vec<String> = join_all((0..20).map(|_| app.event_id(&organiser, 3))).await;
    let (trials, mut sign_ups_done) = (12usize, 0);
    let mut victims = HashSet::new();
    for trial in 0..trials {
        let victim = app.user().await;
        // Each write leaves at its own moment of the few milliseconds the deletion takes.
        let after = || Duration::from_micros(fastrand::u64(0..6000));
        let sign_ups = join_all(events.iter().map(|event| {
            let (path, wait) = (format!("/api/events/{event}/registrations"), after());
            let token = Some(victim.access_token.clone());
            async move {
                tokio::time::sleep(wait).await;
                app.post_owned(path, token, json!({})).await
            }
        }));
        let creations = join_all((0..3).map(|_| {
            let (wait, token) = (after(), Some(victim.access_token.clone()));
            async move {
                tokio::time::sleep(wait).await;
                app.post_owned("/api/events".into(), token, event_body(5))
                    .await
            }
        }));
        let deletion = delete_me(app, &victim);
        let (sign_ups, creations, deletion) = tokio::join!(sign_ups, creations, deletion);
        assert_eq!(deletion.status(), StatusCode::NO_CONTENT);
        for status in sign_ups.iter().chain(&creations).map(|r| r.status()) {
            assert!(done_or_refused(status), "trial {trial}: {status}");
        }
        sign_ups_done += sign_ups
            .iter()
            .filter(|r| r.status() == StatusCode::CREATED)
            .count();
        victims.insert(victim.id.clone());
    }
    // Quiet once every cascade ran; what is left then stays.
    let mut left = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        left = app.registrations_of(&organiser, &events, &victims).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut scheduled = 0;
    for victim in &victims {
        let page = json_of(
            app.get(&format!("/api/events?organizer_id={victim}"), None)
                .await,
            StatusCode::OK,
        )
        .await;
        scheduled += page["items"].as_array().unwrap().len();
    }
    let on_disk = sql_number(
        app.events_database_url(),
        &format!(
            "SELECT count(*) AS n FROM registrations WHERE user_id IN ({})",
            victims
                .iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    eprintln!(
        "{backend:?}: {left} registrations of deleted accounts left of {} racing sign-ups \
         ({sign_ups_done} answered 201), {scheduled} scheduled events of theirs",
        trials * events.len()
    );
    assert_eq!(left, 0, "registrations of deleted accounts left");
    assert_eq!(
        on_disk, 0,
        "registrations of deleted accounts in the database"
    );
    assert_eq!(scheduled, 0, "scheduled events of deleted accounts");
    // And the seats they held were given back: every count matches the attendee list.
    for event in &events {
        let (seats, waiting) = app.seat_counts(event).await;
        let listed = app
            .walk(
                &format!("/api/events/{event}/registrations?limit=100"),
                Some(&organiser.access_token),
            )
            .await;
        assert_eq!((seats + waiting) as usize, listed.len(), "event {event}");
    }
}

/// What a refresh racing `revoke` left alive: whether the successor it got (if any) still
/// refreshes. `revoke` gets the user and the refresh token being rotated.
async fn successor_survives<F, Fut>(app: &TestApp, user: &TestUser, revoke: F) -> bool
where
    F: FnOnce(TestUser, String) -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let tokens = json_of(app.login(&user.email, &user.password).await, StatusCode::OK).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let delay = Duration::from_micros(fastrand::u64(0..3000));
    let refresh = async {
        tokio::time::sleep(delay).await;
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    };
    let (refreshed, revoked) = tokio::join!(refresh, revoke(user.clone(), refresh_token.clone()));
    assert!(revoked.is_success(), "the revocation failed: {revoked}");
    let status = refreshed.status();
    assert!(
        matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED),
        "refresh answered {status}"
    );
    if status != StatusCode::OK {
        return false;
    }
    let successor = json_of(refreshed, StatusCode::OK).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": successor}),
    )
    .await
    .status()
        == StatusCode::OK
}

/// A refresh at the same instant as a password change or a logout: after the revocation's
/// answer no refresh token issued before it works (before: 17 of 20 successors survived a
/// password change on PostgreSQL, 1 of 20 on SQLite).
async fn a_refresh_racing_a_revocation_never_outlives_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app = &app;
    let trials = 20;
    let mut user = app.user().await;
    let (mut after_password, mut after_logout) = (0, 0);
    for trial in 0..trials {
        let new_password = format!("new password {trial}");
        let changed = new_password.clone();
        let survived = successor_survives(app, &user, |user, _| async move {
            app.patch(
                "/api/users/me",
                Some(&user.access_token),
                json!({"password": changed, "current_password": user.password}),
            )
            .await
            .status()
        })
        .await;
        after_password += usize::from(survived);
        user.password = new_password;
        let survived = successor_survives(app, &user, |_, token| async move {
            app.post("/api/auth/logout", None, json!({"refresh_token": token}))
                .await
                .status()
        })
        .await;
        after_logout += usize::from(survived);
    }
    // A login with the old password racing the change opens no session that outlives it.
    let mut logins_alive = 0;
    for trial in 0..trials {
        let new_password = format!("newer password {trial}");
        let login = async {
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..3000))).await;
            app.login(&user.email, &user.password).await
        };
        let change = app.patch(
            "/api/users/me",
            Some(&user.access_token),
            json!({"password": new_password, "current_password": user.password}),
        );
        let (login, change) = tokio::join!(login, change);
        assert_eq!(change.status(), StatusCode::OK);
        user.password = new_password;
        if login.status() != StatusCode::OK {
            continue;
        }
        let tokens: Value = login.json().await.unwrap();
        let again = app
            .post(
                "/api/auth/refresh",
                None,
                json!({"refresh_token": tokens["refresh_token"]}),
            )
            .await;
        logins_alive += usize::from(again.status() == StatusCode::OK);
    }
    eprintln!(
        "{backend:?}: successors alive after the revocation: {after_password} of {trials} \
         (password change), {after_logout} of {trials} (logout); sessions of the old password \
         alive after the change: {logins_alive} of {trials}"
    );
    assert_eq!((after_password, after_logout, logins_alive), (0, 0, 0));
}

/// Eight admins' deletions of one account at once: one deletes, the others find nothing, and
/// the account stays refused everywhere (before: the losers took the mark back, and 11 of 40
/// deleted accounts signed up again on PostgreSQL).
async fn concurrent_deletions_of_one_account_all_keep_it_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin().await;
    let organiser = app.user().await;
    let event = app.event_id(&organiser, 100).await;
    let (trials, mut came_back) = (20, 0);
    let mut victims = HashSet::new();
    for _ in 0..trials {
        let victim = app.user().await;
        victims.insert(victim.id.clone());
        let path = format!("/api/users/{}", victim.id);
        let answers = join_all((0..8).map(|_| app.delete(&path, Some(&admin.access_token)))).await;
        let deleted = answers
            .iter()
            .filter(|r| r.status() == StatusCode::NO_CONTENT)
            .count();
        assert!(
            answers
                .iter()
                .all(|r| matches!(r.status(), StatusCode::NO_CONTENT | StatusCode::NOT_FOUND)),
            "{:?}",
            answers.iter().map(|r| r.status()).collect::<Vec<_>>()
        );
        assert_eq!(deleted, 1, "exactly one deletion happens");
        // The contract: refused from the 204 on in the monolith; in the split as soon as the
        // domain event reached the events module (milliseconds), so there it may take a moment.
        let patience = match topology() {
            Topology::Monolith => Duration::ZERO,
            _ => Duration::from_secs(2),
        };
        let start = std::time::Instant::now();
        let sign_up = loop {
            let sign_up = app
                .post(
                    &format!("/api/events/{event}/registrations"),
                    Some(&victim.access_token),
                    json!({}),
                )
                .await;
            if sign_up.status() == StatusCode::UNAUTHORIZED || start.elapsed() >= patience {
                break sign_up;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let me = app.get("/api/users/me", Some(&victim.access_token)).await;
        if sign_up.status() != StatusCode::UNAUTHORIZED || me.status() != StatusCode::UNAUTHORIZED {
            eprintln!(
                "came back: sign-up {}, /me {}",
                sign_up.status(),
                me.status()
            );
            came_back += 1;
        }
    }
    eprintln!("{backend:?}: deleted accounts accepted again: {came_back} of {trials}");
    assert_eq!(came_back, 0);
    // A sign-up the split let through before the event arrived is removed by the cascade.
    let events = [event];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.registrations_of(&organiser, &events, &victims).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "registrations of deleted accounts left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logins and refreshes sent around the account's deletion: each is 200 or 401, never a 500
/// (before: a foreign-key violation answered 500, 9 to 53 times a run), and no session they
/// opened outlives the deletion.
async fn logins_and_refreshes_racing_a_deletion_get_401_never_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (trials, mut failures, mut sessions_left) = (10, Vec::new(), 0);
    for _ in 0..trials {
        let victim = app.user().await;
        let mut sessions = Vec::new();
        for _ in 0..5 {
            let tokens = json_of(
                app.login(&victim.email, &victim.password).await,
                StatusCode::OK,
            )
            .await;
            sessions.push(tokens["refresh_token"].as_str().unwrap().to_owned());
        }
        let logins = join_all((0..8).map(|_| app.login(&victim.email, &victim.password)));
        let refreshes = join_all(
            sessions
                .iter()
                .map(|token| app.post("/api/auth/refresh", None, json!({"refresh_token": token}))),
        );
        let deletion = async {
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..2000))).await;
            delete_me(&app, &victim).await
        };
        let (logins, refreshes, deletion) = tokio::join!(logins, refreshes, deletion);
        assert_eq!(deletion.status(), StatusCode::NO_CONTENT);
        let mut opened = Vec::new();
        for answer in logins.into_iter().chain(refreshes) {
            match answer.status() {
                StatusCode::OK => {
                    let tokens: Value = answer.json().await.unwrap();
                    opened.push(tokens["refresh_token"].as_str().unwrap().to_owned());
                }
                StatusCode::UNAUTHORIZED => {}
                other => failures.push(other),
            }
        }
        for token in opened {
            let again = app
                .post("/api/auth/refresh", None, json!({"refresh_token": token}))
                .await;
            if again.status() != StatusCode::UNAUTHORIZED {
                sessions_left += 1;
            }
        }
    }
    eprintln!(
        "{backend:?}: answers other than 200/401: {failures:?}; sessions alive after the \
         deletion: {sessions_left}"
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(sessions_left, 0);
}

/// `current_password` checks count like logins: per client address (an IPv6 client by its /64)
/// at the gateway, and per account in the users module, whatever the address.
async fn password_checks_share_the_limit_per_address_and_per_account(backend: Backend) {
    // Per address: the account changes and the logins of one client draw on one quota.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("gateway.auth_rate_per_minute", "4"),
            ("gateway.trusted_proxies", "127.0.0.1, ::1"),
        ],
    )
    .await;
    // Its two requests (register, login) were made from the test's own address.
    let user = app.user().await;
    let wrong = json!({"name": "X", "current_password": "not my password"});
    let attempt = |method: Method, from: &'static str| {
        let mut request = app
            .client
            .request(method, app.url("/api/users/me"))
            .bearer_auth(&user.access_token)
            .json(&wrong);
        request = request.header("x-forwarded-for", from);
        async move { request.send().await.unwrap().status() }
    };
    let forbidden = StatusCode::FORBIDDEN;
    let limited = StatusCode::TOO_MANY_REQUESTS;
    // Eighty addresses of one /64 are one client.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let method = if i % 2 == 0 {
            Method::PATCH
        } else {
            Method::DELETE
        };
        let from: &'static str = Box::leak(format!("2001:db8:7:7::{:x}", i + 1).into_boxed_str());
        statuses.push(attempt(method, from).await);
    }
    assert_eq!(
        statuses,
        [forbidden, forbidden, forbidden, forbidden, limited, limited]
    );
    // Another /64 has a quota of its own; reading one's account is not limited.
    assert_eq!(attempt(Method::PATCH, "2001:db8:7:8::1").await, forbidden);
    json_of(
        app.get("/api/users/me", Some(&user.access_token)).await,
        StatusCode::OK,
    )
    .await;

    // Per account: from ever new addresses, the account's own quota still runs out.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("auth.password_attempts_per_minute", "3"),
            ("gateway.trusted_proxies", "127.0.0.1, ::1"),
        ],
    )
    .await;
    let user = app.user().await; // one password check: the login
    let mut statuses = Vec::new();
    for i in 0..3 {
        let answer = app
            .client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{}", i + 1))
            .json(&json!({"email": user.email, "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status());
    }
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, limited]
    );
    let refused = app
        .expect_problem(
            Method::DELETE,
            "/api/users/me",
            Some(&user),
            json!({"current_password": user.password}),
            limited,
        )
        .await;
    assert!(refused["detail"].as_str().unwrap().contains("account"));
    // An unknown email has a quota too, and is answered as any other before it runs out.
    for _ in 0..3 {
        problem(
            app.login("nobody@example.com", "whatever1").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    problem(app.login("nobody@example.com", "whatever1").await, limited).await;
}

#[cfg(feature = "split")]
mod instances {
    //! Two instances of the events module behind the gateway, as the Compose file runs them.

    use super::*;

    crate::backend_tests!(split: every_events_instance_refuses_a_deleted_account);

    /// Each instance is asked directly, so none can hide behind the other: after a deletion,
    /// both refuse the account's token on every endpoint (before: the one that did not run the
    /// cascade answered 200 for good), and so does an instance started afterwards.
    async fn every_events_instance_refuses_a_deleted_account(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        let processes = app.processes();
        let second = processes.spawn_extra("events", "events2");
        processes.wait_ready("events2").await;
        let first = processes.address("events");
        let client = reqwest::Client::new();
        let my_registrations = |base: &str, token: &str| {
            client
                .get(format!("{base}/api/users/me/registrations"))
                .bearer_auth(token)
                .send()
        };
        let victims = join_all((0..6).map(|_| app.user())).await;
        for victim in &victims {
            for base in [&first, &second] {
                assert_eq!(
                    my_registrations(base, &victim.access_token)
                        .await
                        .unwrap()
                        .status(),
                    StatusCode::OK
                );
            }
            assert_eq!(
                delete_me(&app, victim).await.status(),
                StatusCode::NO_CONTENT
            );
        }
        for victim in &victims {
            for base in [&first, &second] {
                app.eventually("every instance refuses the deleted account", || async {
                    my_registrations(base, &victim.access_token)
                        .await
                        .unwrap()
                        .status()
                        == StatusCode::UNAUTHORIZED
                })
                .await;
            }
        }
        let third = app.processes().spawn_extra("events", "events3");
        app.processes().wait_ready("events3").await;
        for victim in &victims {
            let status = my_registrations(&third, &victim.access_token)
                .await
                .unwrap()
                .status();
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "an instance started afterwards"
            );
        }
    }
}

/// Searches reading one event while its words and start are rewritten, back and forth across
/// seventy others: ahead of them (found by reading the list) and behind them (found from its
/// words' lists, rewritten by each edit). Every answer is `200` and holds it exactly once, by
/// the title it has in that answer; at the end its word rows are those of its text at its
/// start, none left over. A search is several statements: without one snapshot for all, an
/// event moved between them is seen twice or not at all.
async fn searches_racing_edits_of_their_event_find_it_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("cache.enabled", "false")]).await;
    let app = &app;
    let organiser = app.user().await;
    let at = |hours: i64| {
        let starts = chrono::Utc::now() + chrono::Duration::hours(hours);
        json!({"starts_at": starts.to_rfc3339(),
               "ends_at": (starts + chrono::Duration::hours(1)).to_rfc3339()})
    };
    for i in 0..70 {
        let mut filler = at(48);
        filler["title"] = json!(format!("Filler {i}"));
        app.event(&organiser, 5, filler).await;
    }
    let mut first = at(24 * 30);
    first["title"] = json!("Quokka alpha");
    let id = app.event(&organiser, 5, first).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = std::sync::atomic::AtomicBool::new(false);
    let edits = async {
        for edit in 0..60i64 {
            // Ahead of the fillers, behind them, far behind; the title changes every other time.
            let mut change = at([12, 24 * 30, 24 * 90][(edit % 3) as usize]);
            change["title"] = json!(if edit % 2 == 0 {
                "Quokka beta"
            } else {
                "Quokka alpha"
            });
            let path = format!("/api/events/{id}");
            let answer = app
                .patch(&path, Some(&organiser.access_token), change)
                .await;
            assert_eq!(answer.status(), StatusCode::OK, "edit {edit}");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let search = |query: &'static str| {
        let (done, id) = (&done, &id);
        async move {
            let (mut searches, mut found) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let page = json_of(
                    app.get(&format!("/api/events?limit=5&{query}"), None).await,
                    StatusCode::OK,
                )
                .await;
                let items = page["items"].as_array().unwrap();
                let titles: Vec<&str> =
                    items.iter().map(|e| e["title"].as_str().unwrap()).collect();
                assert!(items.iter().all(|e| e["id"] == id.as_str()), "{titles:?}");
                match query {
                    "q=quok" => assert_eq!(items.len(), 1, "{query}: {titles:?}"),
                    "q=quokka%20alpha" => assert!(titles.iter().all(|t| *t == "Quokka alpha")),
                    _ => assert!(titles.iter().all(|t| *t == "Quokka beta")),
                }
                searches += 1;
                found += items.len();
            }
            (searches, found)
        }
    };
    let ((), a, b, c) = tokio::join!(
        edits,
        search("q=quok"),
        search("q=quokka%20alpha"),
        search("q=bet")
    );
    println!("searches (found): quok {a:?}, quokka alpha {b:?}, bet {c:?}");
    assert!(
        a.0 >= 5 && b.0 >= 5 && c.0 >= 5,
        "the searches raced the edits"
    );
    assert!(
        b.1 > 0 && c.1 > 0,
        "each title was found while it was the event's"
    );
    let db = app.events_database_url();
    let stale = format!(
        "SELECT COUNT(*) AS n FROM event_words w JOIN events e ON e.id = w.event_id \
         WHERE e.id = '{id}' AND (w.starts_at <> e.starts_at OR w.word = 'beta')"
    );
    assert_eq!(sql_number(db, &stale), 0, "word rows left over");
}
