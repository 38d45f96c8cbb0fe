//! The edges an attacker or a crowd reaches: paths spelled to slip past a policy, deleted
//! accounts' tokens, slow clients, invented methods, and the gateway's answers to methods and
//! `HEAD`. Every test runs on both backends and in every topology.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, TestApp, Topology, json_of, problem, topology};

crate::backend_tests!(
    every_spelling_of_a_path_meets_the_same_policies,
    paths_without_a_canonical_form_are_refused,
    a_query_string_that_is_not_utf8_is_refused_on_every_route,
    the_internal_api_is_unreachable_however_the_path_is_spelled,
    a_deleted_accounts_token_acts_nowhere,
    head_is_served_and_a_wrong_method_is_405_with_allow,
    invented_methods_and_paths_add_no_metric_series,
    a_stalled_body_is_answered_408,
    stalled_headers_are_answered_or_closed,
    passwords_are_compared_in_full,
    former_password_hashes_log_in_and_are_upgraded,
    every_answer_says_nosniff_and_every_refusal_is_a_problem,
    readiness_needs_every_table_of_the_module,
);

/// `nosniff` on every answer, a CSP on every HTML page, `no-store` on token answers, and
/// problem details for the refusals a library used to word: an oversized request target
/// (`414`) or header section (`431`), a refused CORS preflight. Before: none of these held.
async fn every_answer_says_nosniff_and_every_refusal_is_a_problem(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("gateway.cors_allowed_origins", "https://good.example")],
    )
    .await;
    let user = app.user().await;
    let nosniff = |response: &reqwest::Response| {
        let value = response.headers().get("x-content-type-options");
        assert_eq!(
            value.map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{} {}",
            response.url(),
            response.status()
        );
    };
    for (path, token) in [
        ("/api/events", None),
        ("/api/users/me", Some(user.access_token.as_str())),
        ("/api/users/me", None),
        ("/api/nothing-here", None),
        ("/healthz", None),
        ("/api/openapi.json", None),
        ("/", None),
    ] {
        nosniff(&app.get(path, token).await);
    }
    let docs = app.get("/api/docs", None).await;
    nosniff(&docs);
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );

    let login = app.login(&user.email, &user.password).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let tokens: serde_json::Value = login.json().await.unwrap();
    let refreshed = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(refreshed.headers()["cache-control"], "no-store");

    let long_query = format!("/api/events?category={}", "a".repeat(9 * 1024));
    let refused = app.get(&long_query, None).await;
    nosniff(&refused);
    problem(refused, StatusCode::URI_TOO_LONG).await;
    let big_header = app
        .client
        .get(app.url("/api/events"))
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    nosniff(&big_header);
    problem(big_header, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;

    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/events"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://good.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let refused = preflight("https://evil.example").await.unwrap();
    nosniff(&refused);
    let body = problem(refused, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("CORS"), "{body}");
}

/// `/readyz` checks the module's tables, not only that the database answers: a database that
/// lost one (a botched restore) makes the process unready.
async fn readiness_needs_every_table_of_the_module(backend: Backend) {
    // Mutable to reach the split's processes.
    #[cfg_attr(not(feature = "split"), allow(unused_mut))]
    let mut app = TestApp::spawn(backend).await;
    let ready = match topology() {
        Topology::Monolith => app.url("/readyz"),
        #[cfg(feature = "split")]
        _ => format!("{}/readyz", app.processes().address("events")),
        #[cfg(not(feature = "split"))]
        _ => unreachable!(),
    };
    assert_eq!(
        app.client.get(&ready).send().await.unwrap().status(),
        StatusCode::OK
    );
    crate::helpers::sql_number(
        app.events_database_url(),
        "SELECT count(*) AS n FROM events_inbox",
    );
    crate::helpers::sql_execute(app.events_database_url(), "DROP TABLE events_inbox");
    let answer = app.client.get(&ready).send().await.unwrap();
    problem(answer, StatusCode::SERVICE_UNAVAILABLE).await;
}

/// A raw HTTP/1.1 `GET` of `target`, sent as it is spelled.
fn raw_get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: rsvp\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A raw HTTP/1.1 request with a JSON body.
fn raw_post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: rsvp\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const WAIT: Duration = Duration::from_secs(10);

/// The login rate limit, the routing and the metrics label see the path the router routes:
/// once `/api/auth/login` answers 429, no other spelling of it logs in, and every spelling is
/// counted under the one route.
async fn every_spelling_of_a_path_meets_the_same_policies(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("gateway.auth_rate_per_minute", "2")]).await;
    let ada = app.user().await; // registered and logged in: the quota of 2 is spent
    let login = json!({"email": ada.email, "password": ada.password}).to_string();
    let limited = app.raw(&raw_post("/api/auth/login", &login), WAIT).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    for spelling in [
        "/api/%61uth/login",
        "/%61pi/auth/login",
        "/api/aut%68/login",
        "/api//auth/login",
        "/api/./auth/login",
        "/api/x/../auth/login",
        "/api/x/%2e%2e/auth/login",
        "/api%2Fauth%2Flogin",
        "/api\\auth\\login",
        "/api/auth/login/.",
    ] {
        let answer = app.raw(&raw_post(spelling, &login), WAIT).await;
        assert_eq!(
            answer.status, 429,
            "{spelling} slipped past: {}",
            answer.text
        );
    }
    let register = json!({"email": "x@example.com", "password": "password1", "name": "X"});
    let answer = app
        .raw(
            &raw_post("/api/aut%68/register", &register.to_string()),
            WAIT,
        )
        .await;
    assert_eq!(answer.status, 429, "{}", answer.text);

    // Routing decodes the same way: another spelling of a read reaches the same route...
    let spelled = app
        .raw(
            b"GET /api/%65vents?limit=1 HTTP/1.1\r\nHost: rsvp\r\nConnection: close\r\n\r\n",
            WAIT,
        )
        .await;
    assert_eq!(spelled.status, 200, "{}", spelled.text);
    // ...and the metrics name the route, never the spelling.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"route="/api/auth/login",status="429""#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("%61") && !metrics.contains("%65"),
        "{metrics}"
    );
}

async fn paths_without_a_canonical_form_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/..",
        "/api/../../internal",
        "/%2e%2e/api/events",
        "/api/%00",
        "/api/%ff",
    ] {
        let answer = app.raw(&raw_get(path), WAIT).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
        assert!(answer.text.contains("application/problem+json"), "{path}");
    }
}

/// Every decoder of a query string replaces bytes that are not UTF-8 with U+FFFD, so a
/// parameter read as it came would mean something else: `q=%FF` searched for nothing (every
/// event), a Latin-1 `sp%E4ti` for a word no one wrote. Refused at the edge, whatever the route,
/// parameter, or whether it is a name or a value. Before: `200` on each.
async fn a_query_string_that_is_not_utf8_is_refused_on_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organiser = app.user().await;
    let event = app
        .event(&organiser, 1, json!({"title": "Späti tour"}))
        .await;
    let id = event["id"].as_str().unwrap();
    let routes = [
        "/api/events".to_owned(),
        format!("/api/events/{id}"),
        format!("/api/events/{id}/calendar.ics"),
        format!("/api/events/{id}/registrations"),
        format!("/events/{id}"),
        "/api/users".to_owned(),
        "/api/users/me/notifications".to_owned(),
        "/".to_owned(),
        "/no/such/route".to_owned(),
    ];
    for route in &routes {
        for query in [
            "q=%FF",
            "q=sp%E4ti",
            "location=%C3",
            "%FF=1",
            "limit=2&cursor=%ED%A0%80",
        ] {
            let target = format!("{route}?{query}");
            let answer = app.raw(&raw_get(&target), WAIT).await;
            assert_eq!(answer.status, 400, "{target}: {}", answer.text);
            assert!(
                answer.text.contains("application/problem+json") && answer.text.contains("UTF-8"),
                "{target}: {}",
                answer.text
            );
        }
    }
    // The same words spelled in UTF-8 are searched for.
    let found = json_of(
        app.get("/api/events?q=sp%C3%A4ti", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["items"][0]["id"], id, "{found}");
}

/// In the split topology the gateway proxies what it does not serve; a path that only resolves
/// to `/internal` upstream must never get there, whatever its spelling.
async fn the_internal_api_is_unreachable_however_the_path_is_spelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/internal/users/public_profiles",
        "/.well-known/../internal/users/public_profiles",
        "/.well-known/%2e%2e/internal/users/public_profiles",
        "/.well-known/%2E%2E%2Finternal%2Fusers%2Fprofiles",
        "/api/events/..%2F..%2Finternal/users/profiles",
        "/api/users/..\\..\\internal/users/profiles",
        "//internal/users/public_profiles",
        "/%69nternal/users/profiles",
    ] {
        let answer = app.raw(&raw_post(path, r#"{"ids":[]}"#), WAIT).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
    }
}

/// After `DELETE /api/users/me`, the account's unexpired access token acts nowhere: not in the
/// users module, not in the events module (in the split topology from the moment `user.deleted`
/// reached it), and not after a restart either.
async fn a_deleted_accounts_token_acts_nowhere(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let organiser = app.user().await;
    let ghost = app.user().await;
    let event = app.event(&organiser, 1, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let sign_up = format!("/api/events/{id}/registrations");

    let deleted = app
        .request(
            Method::DELETE,
            "/api/users/me",
            Some(&ghost.access_token),
            Some(json!({"current_password": ghost.password})),
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let token = ghost.access_token.as_str();
    let acts = Actions {
        sign_up: &sign_up,
        event: &format!("/api/events/{id}"),
        profile: &format!("/api/users/{}", organiser.id),
    };
    if topology() == Topology::Monolith {
        assert!(
            acts.all_refused(&app, token).await,
            "refused from the 204 on"
        );
    } else {
        app.eventually("every module refuses the deleted account", || {
            acts.all_refused(&app, token)
        })
        .await;
    }
    problem(
        app.post(&sign_up, Some(token), json!({})).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // The seat went to a real person.
    let ada = app.user().await;
    let taken = json_of(
        app.post(&sign_up, Some(&ada.access_token), json!({})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(taken["status"], "confirmed");

    // A restart forgets nothing: the deletion is remembered for one token lifetime.
    app.restart(&[]).await;
    assert!(
        acts.all_refused(&app, token).await,
        "still refused after a restart"
    );
}

/// What a token may try: one action of each module.
struct Actions<'a> {
    sign_up: &'a str,
    event: &'a str,
    profile: &'a str,
}

impl Actions<'_> {
    /// Whether every action is refused with 401 for `token`.
    async fn all_refused(&self, app: &TestApp, token: &str) -> bool {
        let answers = [
            app.post(self.sign_up, Some(token), json!({}))
                .await
                .status(),
            app.post("/api/events", Some(token), crate::helpers::event_body(5))
                .await
                .status(),
            app.patch(self.event, Some(token), json!({"title": "x"}))
                .await
                .status(),
            app.get("/api/users/me/registrations", Some(token))
                .await
                .status(),
            app.get("/api/users/me", Some(token)).await.status(),
            app.get(self.profile, Some(token)).await.status(),
        ];
        answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED)
    }
}

async fn head_is_served_and_a_wrong_method_is_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let event = app.event(&ada, 3, json!({})).await;
    let id = event["id"].as_str().unwrap();
    for path in [
        "/api/events".to_owned(),
        format!("/api/events/{id}"),
        "/healthz".to_owned(),
        "/api/openapi.json".to_owned(),
        "/.well-known/jwks.json".to_owned(),
    ] {
        let get = app.get(&path, None).await;
        let length = get.headers()["content-length"].clone();
        let head = app.request(Method::HEAD, &path, None, None).await;
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(head.headers()["content-length"], length, "HEAD {path}");
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
    }
    let head = app
        .request(Method::HEAD, "/api/users/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(head.status(), StatusCode::OK);

    for (method, path, allow) in [
        (Method::PUT, "/api/events".to_owned(), "GET, HEAD, POST"),
        (
            Method::PUT,
            format!("/api/events/{id}"),
            "GET, HEAD, PATCH, DELETE",
        ),
        (Method::GET, "/api/auth/login".to_owned(), "POST"),
        (Method::DELETE, "/api/auth/register".to_owned(), "POST"),
        (
            Method::POST,
            "/api/users/me".to_owned(),
            "GET, HEAD, PATCH, DELETE",
        ),
        (
            Method::PATCH,
            format!("/api/users/{}", ada.id),
            "GET, HEAD, DELETE",
        ),
        (
            Method::GET,
            format!("/api/events/{id}/registrations/me"),
            "DELETE",
        ),
        (Method::POST, "/healthz".to_owned(), "GET, HEAD"),
        (Method::OPTIONS, "/api/events".to_owned(), "GET, HEAD, POST"),
    ] {
        let response = app
            .request(method.clone(), &path, Some(&ada.access_token), None)
            .await;
        assert_eq!(
            response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(allow.to_owned()),
            "{method} {path}"
        );
        problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    problem(app.get("/api/nothing", None).await, StatusCode::NOT_FOUND).await;
    problem(
        app.request(Method::PUT, "/api/nothing", None, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// The label sets of one metric.
fn series(metrics: &str, name: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .map(|line| line.split('}').next().unwrap().to_owned())
        .collect()
}

/// A client inventing methods and paths can not grow `/metrics` (nor the memory behind it):
/// invented methods count as `other`, unknown paths as `unmatched`.
async fn invented_methods_and_paths_add_no_metric_series(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let metrics = |app: &TestApp| {
        let url = app.url("/metrics");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // Warm up the label sets a flood legitimately uses.
    app.request(Method::from_bytes(b"BREW").unwrap(), "/nowhere", None, None)
        .await;
    app.get("/nowhere", None).await;
    app.get("/metrics", None).await;
    let before = series(&metrics(&app).await, "rsvp_http_requests_total");

    let app = &app;
    for batch in 0..20 {
        let requests = (0..50).map(|i| {
            let method: String = (0..8).map(|_| fastrand::uppercase()).collect();
            let path = match (batch + i) % 3 {
                0 => format!("/{}", fastrand::u64(..)),
                1 => format!("/api/events/{}/{}", fastrand::u64(..), fastrand::u32(..)),
                _ => format!("/api/{}", fastrand::u64(..)),
            };
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            async move { app.request(method, &path, None, None).await }
        });
        futures_util::future::join_all(requests).await;
    }
    let after = series(&metrics(app).await, "rsvp_http_requests_total");
    // Calls between modules (a hosted module's internal endpoint, asked on a schedule of its
    // caller's) may come in meanwhile: their labels are the kit's, not the client's to vary.
    let new: Vec<&String> = after
        .iter()
        .filter(|s| !before.contains(s) && !s.contains(r#"route="/internal/"#))
        .collect();
    eprintln!(
        "FIGURE {backend:?}: request series before a 1,000-request flood {}, after {}",
        before.len(),
        after.len()
    );
    assert!(
        new.iter()
            .all(|s| s.contains(r#"method="other""#) || s.contains(r#"route="unmatched""#)),
        "{new:?}"
    );
    assert!(new.len() <= 4, "the flood added series: {new:?}");
}

/// A body that stops arriving is answered 408 once `server.body_timeout_ms` has passed, and the
/// connection does not stay open; a thousand such clients would otherwise hold a thousand.
async fn a_stalled_body_is_answered_408(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("server.body_timeout_ms", "1000")]).await;
    let stalled = b"POST /api/auth/login HTTP/1.1\r\nHost: rsvp\r\n\
                    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"";
    let answers = futures_util::future::join_all((0..20).map(|_| app.raw(stalled, WAIT))).await;
    for answer in answers {
        assert_eq!(answer.status, 408, "{answer:?}");
        assert!(answer.closed, "{answer:?}");
        assert!(answer.after < Duration::from_secs(5), "{answer:?}");
        assert!(
            answer.text.contains("application/problem+json"),
            "{answer:?}"
        );
    }
    // A body that arrives in time is unaffected.
    let ada = app.user().await;
    let login = json!({"email": ada.email, "password": ada.password}).to_string();
    assert_eq!(
        app.raw(&raw_post("/api/auth/login", &login), WAIT)
            .await
            .status,
        200
    );
}

/// Headers that stop arriving get 408 (or a close) within `server.header_timeout_ms`.
async fn stalled_headers_are_answered_or_closed(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("server.header_timeout_ms", "1000")]).await;
    let answer = app
        .raw(b"GET /api/events HTTP/1.1\r\nHost: rsvp\r\nX-Slow: ", WAIT)
        .await;
    assert!(answer.closed, "{answer:?}");
    assert!(answer.status == 408 || answer.status == 0, "{answer:?}");
    assert!(answer.after < Duration::from_secs(5), "{answer:?}");
}

/// bcrypt reads 72 bytes; rsvp compares the whole password.
async fn passwords_are_compared_in_full(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let prefix = "A".repeat(72);
    let password = format!("{prefix}-the-rest");
    json_of(
        app.register("long@example.com", &password, "Long").await,
        StatusCode::CREATED,
    )
    .await;
    json_of(
        app.login("long@example.com", &password).await,
        StatusCode::OK,
    )
    .await;
    for other in [
        format!("{prefix}-other-rest"),
        prefix.clone(),
        format!("{prefix}x"),
    ] {
        problem(
            app.login("long@example.com", &other).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    // Multi-byte characters count as characters: 128 of them is a valid password.
    let wide = "é".repeat(128);
    json_of(
        app.register("wide@example.com", &wide, "Wide").await,
        StatusCode::CREATED,
    )
    .await;
    json_of(app.login("wide@example.com", &wide).await, StatusCode::OK).await;
    problem(
        app.login("wide@example.com", &"é".repeat(127)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

/// The stored hash of one account, read from the users module's own database.
fn stored_hash(database_url: &str, email: &str, replace_with: Option<&str>) -> String {
    use diesel::{Connection, RunQueryDsl, sql_types::Text};

    #[derive(diesel::QueryableByName)]
    struct Hash {
        #[diesel(sql_type = Text)]
        password_hash: String,
    }
    macro_rules! on {
        ($conn:expr) => {{
            let conn = &mut $conn;
            if let Some(hash) = replace_with {
                diesel::sql_query(format!(
                    "UPDATE users SET password_hash = '{hash}' WHERE email = '{email}'"
                ))
                .execute(conn)
                .unwrap();
            }
            diesel::sql_query(format!(
                "SELECT password_hash FROM users WHERE email = '{email}'"
            ))
            .get_result::<Hash>(conn)
            .unwrap()
            .password_hash
        }};
    }
    match database_url.strip_prefix("sqlite://") {
        Some(path) => on!(diesel::SqliteConnection::establish(path).unwrap()),
        None => on!(diesel::PgConnection::establish(database_url).unwrap()),
    }
}

/// Accounts hashed before passwords were compared in full (plain bcrypt) still log in, and that
/// login replaces their hash, so from then on the whole password counts for them too.
async fn former_password_hashes_log_in_and_are_upgraded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let url = app.users_database_url().to_owned();
    let email = ada.email.clone();
    let legacy = bcrypt::hash(&ada.password, 4).unwrap();
    let written = tokio::task::spawn_blocking(move || stored_hash(&url, &email, Some(&legacy)))
        .await
        .unwrap();
    assert!(written.starts_with("$2"), "{written}");

    problem(
        app.login(&ada.email, "not the password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    json_of(app.login(&ada.email, &ada.password).await, StatusCode::OK).await;
    let url = app.users_database_url().to_owned();
    let email = ada.email.clone();
    let upgraded = tokio::task::spawn_blocking(move || stored_hash(&url, &email, None))
        .await
        .unwrap();
    assert!(upgraded.starts_with("$sha256$2"), "{upgraded}");
    json_of(app.login(&ada.email, &ada.password).await, StatusCode::OK).await;
}
