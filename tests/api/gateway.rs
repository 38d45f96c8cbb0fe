//! The gateway's own contract: request ids, operations endpoints, metrics, OpenAPI, CORS,
//! unknown routes, and configuration errors at start.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, json_of, problem};

crate::backend_tests!(
    request_ids_are_echoed_or_generated,
    health_readiness_and_metrics_answer,
    the_openapi_document_covers_the_whole_contract,
    unknown_routes_and_methods_are_problem_json,
    cors_is_off_by_default_and_configurable,
    the_container_probe_reports_health,
    metrics_can_move_off_the_public_listener,
    the_api_reference_is_browsable,
);

/// The body of a `200` HTML page.
async fn html_of(page: reqwest::Response) -> String {
    assert_eq!(page.status(), StatusCode::OK);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    page.text().await.unwrap()
}

/// `/api/docs` shows every operation and schema of the served document, as HTML that loads
/// nothing else, linked from the web page.
async fn the_api_reference_is_browsable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = json_of(app.get("/api/openapi.json", None).await, StatusCode::OK).await;
    let html = html_of(app.get("/api/docs", None).await).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let heading = format!("{}</span> <code>{path}</code>", method.to_uppercase());
            assert!(html.contains(&heading), "{method} {path} missing");
        }
    }
    for schema in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            html.contains(&format!("id=\"schema-{schema}\"")),
            "{schema} missing"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "loads nothing"
    );
    let index = app.get("/", None).await.text().await.unwrap();
    assert!(index.contains("href=\"/api/docs\""));
}

/// With `server.metrics_bind`, `/metrics` is served there and no longer on the public port (an
/// Ingress in front of it can not expose it). Split: every process binds a port of its own.
async fn metrics_can_move_off_the_public_listener(backend: Backend) {
    let monolith = crate::helpers::topology() == crate::helpers::Topology::Monolith;
    let address = if monolith {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    } else {
        "127.0.0.1:0".to_owned()
    };
    let app = TestApp::spawn_with(backend, &[("server.metrics_bind", &address)]).await;
    problem(app.get("/metrics", None).await, StatusCode::NOT_FOUND).await;
    if monolith {
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("rsvp_build_info"), "{text}");
        assert!(text.contains("rsvp_db_pool_connections"), "{text}");
    }
}

/// `rsvp probe` (every image's `HEALTHCHECK`) asks the process at `server.bind` for its health.
async fn the_container_probe_reports_health(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bind = app.address.trim_start_matches("http://").to_owned();
    let probe = |bind: String, path: &'static str| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rsvp"))
            .args(["probe", path])
            .env("RSVP__SERVER__BIND", bind)
            .output()
            .await
            .expect("rsvp probe runs")
    };
    for path in ["/healthz", "/readyz"] {
        let answer = probe(bind.clone(), path).await;
        assert!(answer.status.success(), "{path}: {answer:?}");
    }
    let port = bind.rsplit(':').next().unwrap().to_owned();
    let unspecified = probe(format!("0.0.0.0:{port}"), "/healthz").await;
    assert!(unspecified.status.success(), "{unspecified:?}");
    let missing = probe(bind.clone(), "/nowhere").await;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let nobody = probe("127.0.0.1:1".into(), "/healthz").await;
    assert_eq!(nobody.status.code(), Some(1), "{nobody:?}");
}

async fn request_ids_are_echoed_or_generated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/api/events"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let generated = app.get("/healthz", None).await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    // Errors carry it too, and an unusable id is replaced.
    let response = app
        .client
        .get(app.url("/api/events/x"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    json_of(app.get("/healthz", None).await, StatusCode::OK).await;
    json_of(app.get("/readyz", None).await, StatusCode::OK).await;
    let id = uuid::Uuid::new_v4();
    app.get(&format!("/api/events/{id}"), None).await;
    app.get("/api/events", None).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"rsvp_http_requests_total{method="GET",route="/api/events/{id}",status="404"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"rsvp_http_request_duration_seconds_bucket{method="GET",route="/api/events",status="200""#
    ));
    assert!(
        !metrics.contains(&id.to_string()),
        "raw paths must not become labels"
    );
    // The monolith reports its pool; a split gateway (no database) its upstreams.
    assert!(
        metrics.contains(r#"rsvp_db_pool_connections{state="max"}"#)
            || metrics.contains(r#"rsvp_upstream_instances{module="events",state="healthy"} 1"#),
        "{metrics}"
    );
    // What the build is, and what the process costs.
    assert!(metrics.contains(r#"rsvp_build_info{split=""#), "{metrics}");
    for process_metric in [
        "rsvp_process_cpu_seconds_total",
        "rsvp_process_resident_memory_bytes",
        "rsvp_process_open_fds",
    ] {
        assert!(
            metrics.contains(process_metric),
            "{process_metric}: {metrics}"
        );
    }
}

async fn the_openapi_document_covers_the_whole_contract(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = json_of(app.get("/api/openapi.json", None).await, StatusCode::OK).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/logout", "post"),
        ("/api/users/me", "get"),
        ("/api/users/me", "patch"),
        ("/api/users/me", "delete"),
        ("/api/users/{id}", "get"),
        ("/api/users", "get"),
        ("/api/users/{id}", "delete"),
        ("/.well-known/jwks.json", "get"),
        ("/api/events", "get"),
        ("/api/events", "post"),
        ("/api/events/{id}", "get"),
        ("/api/events/{id}/calendar.ics", "get"),
        ("/events/{id}", "get"),
        ("/api/users/me/calendar-feed", "post"),
        ("/api/users/me/calendar-feed", "delete"),
        ("/api/calendar/{secret}.ics", "get"),
        ("/api/events/{id}", "patch"),
        ("/api/events/{id}", "delete"),
        ("/api/events/{id}/registrations", "post"),
        ("/api/events/{id}/registrations/me", "delete"),
        ("/api/events/{id}/registrations", "get"),
        ("/api/users/me/registrations", "get"),
        ("/api/auth/password-reset", "post"),
        ("/api/auth/password-reset/confirm", "post"),
        ("/api/users/me/notifications", "get"),
        ("/api/users/me/notifications/{id}", "patch"),
        ("/api/users/me/notification-settings", "get"),
        ("/api/users/me/notification-settings", "put"),
        ("/api/notifications/unsubscribe", "get"),
        ("/api/notifications/unsubscribe", "post"),
    ];
    // Client generators name a method after each operationId: no two may share one.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let operations = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        operations,
        "an operationId is used twice: {ids:?}"
    );
    assert_eq!(operations, expected.len());
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ProblemBody"].is_object());

    // Every answer a route can give is documented, every error as problem+json.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let documents = |status: &str| responses.contains_key(status);
            let route = format!("{method} {path}");
            assert!(documents("503"), "{route}: 503");
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(documents(status), "{route}: {status}");
                }
            }
            if operation.get("security").is_some() {
                assert!(documents("401"), "{route}: 401");
            }
            if path.starts_with("/api/auth/") {
                assert!(documents("429"), "{route}: 429");
            }
            for (status, response) in responses {
                if status.as_str() >= "400" {
                    let content = response["content"].as_object().unwrap();
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{route}: {status}"
                    );
                }
            }
        }
    }
}

async fn unknown_routes_and_methods_are_problem_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    problem(app.get("/nowhere", None).await, StatusCode::NOT_FOUND).await;
    // A known path asked with a method it does not serve (more in `edges`).
    problem(
        app.request(reqwest::Method::PUT, "/api/events", None, Some(json!({})))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

async fn cors_is_off_by_default_and_configurable(backend: Backend) {
    let closed = TestApp::spawn(backend).await;
    let response = closed
        .client
        .get(closed.url("/api/events"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let open = TestApp::spawn_with(
        backend,
        &[("gateway.cors_allowed_origins", "https://app.example")],
    )
    .await;
    let preflight = open
        .client
        .request(reqwest::Method::OPTIONS, open.url("/api/events"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // Also when compressed: an answer varies by the origin as well as by the coding.
    for accept in ["identity", "br"] {
        let response = open
            .client
            .get(open.url("/api/events"))
            .header("origin", "https://app.example")
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example"
        );
        let vary: Vec<String> = response
            .headers()
            .get_all("vary")
            .iter()
            .flat_map(|v| {
                v.to_str()
                    .unwrap()
                    .split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
            })
            .collect();
        for name in ["origin", "accept-encoding"] {
            assert!(
                vary.iter().any(|v| v == name),
                "{accept}: Vary {vary:?} lacks {name}"
            );
        }
    }
}
