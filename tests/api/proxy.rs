//! The split gateway as a reverse proxy, through the real binaries: it routes by its configured
//! table, and passes on what lets one request be followed through every process's logs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, json_of, problem};

crate::backend_tests!(
    split:
    the_gateway_proxies_by_its_configured_route_table,
    one_request_is_followed_through_every_process_by_its_ids,
);
crate::backend_tests!(split, postgres: a_thousand_simultaneous_sign_ups_queue_instead_of_failing);
crate::backend_tests!(split, sqlite: malformed_requests_are_refused_without_error_lines);

/// An operator keeps the key set off the public entry by leaving `/.well-known` out of
/// `gateway.routes`: the gateway no longer proxies it, while the users service still serves it
/// to the services that verify tokens, and every other route works as before.
async fn the_gateway_proxies_by_its_configured_route_table(backend: Backend) {
    let routes = "/api/users/me/registrations=events, /api/events=events, /api/auth=users, \
                  /api/users=users";
    let mut app = TestApp::spawn_with(backend, &[("gateway.routes", routes)]).await;
    let ada = app.user().await;
    let event = app.event(&ada, 5, json!({})).await;
    let path = format!(
        "/api/events/{}/registrations",
        event["id"].as_str().unwrap()
    );
    let signed_up = app.post(&path, Some(&ada.access_token), json!({})).await;
    json_of(signed_up, StatusCode::CREATED).await;
    let mine = app
        .get("/api/users/me/registrations", Some(&ada.access_token))
        .await;
    assert_eq!(
        json_of(mine, StatusCode::OK).await["items"][0]["event"]["id"],
        event["id"]
    );

    problem(
        app.get("/.well-known/jwks.json", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Prefixes match whole segments: a look-alike path is no route either.
    problem(app.get("/api/eventsx", None).await, StatusCode::NOT_FOUND).await;
    let users = app.processes().address("users");
    let direct = app
        .client
        .get(format!("{users}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(
        !json_of(direct, StatusCode::OK).await["keys"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A request that crosses every process (the gateway, the events service, and the users service
/// the events service asks for names) carries the caller's `X-Request-Id` and W3C trace id into
/// each one's log lines, so one search follows it through the deployment. With a load balancer
/// in front (here on loopback) that the gateway trusts, and the events service trusting the
/// gateway, both log the client the load balancer named.
/// The client a load balancer in front of the gateway names (TEST-NET-3).
const CLIENT: &str = "203.0.113.9";

async fn one_request_is_followed_through_every_process_by_its_ids(backend: Backend) {
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!("skipped: with TEST_LOG the processes log to the terminal, not to files");
        return;
    }
    let settings = [
        ("log.level", "info"),
        ("gateway.trusted_proxies", "127.0.0.1"),
    ];
    let mut app = TestApp::spawn_with(backend, &settings).await;
    let events = app.processes();
    events.kill("events").await;
    events.set("events", "gateway.trusted_proxies", "127.0.0.1");
    events.spawn("events");
    events.wait_ready("events").await;
    let (ada, bob) = (app.user().await, app.user_named("Bob").await);
    let event = app.event(&ada, 5, json!({})).await;
    let attendees = format!(
        "/api/events/{}/registrations",
        event["id"].as_str().unwrap()
    );
    let signed_up = app
        .post(&attendees, Some(&bob.access_token), json!({}))
        .await;
    json_of(signed_up, StatusCode::CREATED).await;

    let request_id = format!("follow-{}", Uuid::new_v4().simple());
    let trace_id = Uuid::new_v4().simple().to_string();
    let response = app
        .client
        .get(app.url(&attendees))
        .bearer_auth(&ada.access_token)
        .header("x-request-id", &request_id)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-forwarded-for", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], request_id.as_str());
    let page = json_of(response, StatusCode::OK).await;
    assert_eq!(
        page["items"][0]["user"]["name"], "Bob",
        "the names come from the users service"
    );

    let processes = app.processes();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, client) in [
        ("gateway", CLIENT),
        ("events", CLIENT),
        ("users", "127.0.0.1"),
    ] {
        let client_ip = format!(r#""client_ip":"{client}""#);
        // A process writes its log line when the request finishes, maybe after we got the answer.
        while !processes.log(name).lines().any(|line| {
            line.contains(&request_id) && line.contains(&trace_id) && line.contains(&client_ip)
        }) {
            assert!(
                Instant::now() < deadline,
                "{name} logged no line with request id {request_id}, trace id {trace_id} and \
                 {client_ip}:\n{}",
                processes.log(name)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A burst on a healthy upstream queues at the gateway instead of failing: a thousand people
/// signing up at the same moment all get an answer from the events service, none a 503.
async fn a_thousand_simultaneous_sign_ups_queue_instead_of_failing(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("database.max_connections", "16")]).await;
    let ada = app.user().await;
    let event = app.event(&ada, 100, json!({})).await;
    let path = format!(
        "/api/events/{}/registrations",
        event["id"].as_str().unwrap()
    );
    let mut people = Vec::new();
    for _ in 0..20 {
        people.extend(futures_util::future::join_all((0..50).map(|_| app.user())).await);
    }
    let started = Instant::now();
    let answers = futures_util::future::join_all(
        people
            .iter()
            .map(|p| app.post(&path, Some(&p.access_token), json!({}))),
    )
    .await;
    let elapsed = started.elapsed();
    let mut failed = std::collections::BTreeMap::new();
    for answer in &answers {
        if !answer.status().is_success() {
            *failed.entry(answer.status().as_u16()).or_insert(0) += 1;
        }
    }
    eprintln!(
        "FIGURE: 1,000 simultaneous sign-ups through the split gateway: {} ms, non-2xx {failed:?}",
        elapsed.as_millis()
    );
    if !failed.is_empty() {
        let mut app = app;
        for process in ["gateway", "events"] {
            let log = app.processes().log(process);
            let warnings: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
                .take(10)
                .collect();
            eprintln!("{process} warnings:\n{}", warnings.join("\n"));
        }
        panic!("non-2xx answers: {failed:?}");
    }
    let event = json_of(
        app.get(
            &format!("/api/events/{}", event["id"].as_str().unwrap()),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            event["seats_taken"].as_i64(),
            event["waitlist_length"].as_i64()
        ),
        (Some(100), Some(900))
    );
}

/// A malformed request is the client's fault: still 400, but logged as a warning, not as an
/// ERROR line any client could write into an operator's pager.
async fn malformed_requests_are_refused_without_error_lines(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let wait = Duration::from_secs(5);
    for request in [
        &b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n"[..],
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let answer = app.raw(request, wait).await;
        assert_eq!(answer.status, 400, "{answer:?}");
    }
    let gateway = app.processes().log("gateway");
    let refusals: Vec<&str> = gateway
        .lines()
        .filter(|line| line.contains("malformed request refused"))
        .collect();
    assert_eq!(refusals.len(), 3, "{gateway}");
    assert!(
        refusals
            .iter()
            .all(|line| line.contains(r#""level":"WARN""#))
    );
    assert!(
        !gateway
            .lines()
            .any(|line| line.contains(r#""level":"ERROR""#)),
        "{gateway}"
    );
}
