//! Registration, login, token refresh and rotation, logout, JWKS.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, fields, json_of, problem, redis_url};

crate::backend_tests!(
    register_creates_a_member_with_a_normalised_email,
    register_rejects_invalid_fields_with_422,
    duplicate_email_is_409_whatever_the_case,
    login_failure_looks_the_same_for_unknown_email_and_wrong_password,
    refresh_rotates_and_a_reused_token_revokes_the_family,
    logout_revokes_the_session,
    access_tokens_verify_with_the_published_jwks,
    signing_keys_rotate_without_logging_anyone_out,
    protected_routes_refuse_missing_forged_and_expired_tokens,
    malformed_bodies_get_400_413_415,
    auth_rate_limit_answers_429_with_retry_after,
    the_rate_limit_believes_forwarded_for_only_from_trusted_proxies,
    gateway_instances_sharing_redis_share_the_auth_rate_limit,
);

async fn register_creates_a_member_with_a_normalised_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .register(
            "  Ada.Lovelace@Example.COM ",
            "analytical engine",
            "  Ada  ",
        )
        .await;
    let user = json_of(response, StatusCode::CREATED).await;
    assert_eq!(user["email"], "ada.lovelace@example.com");
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["role"], "member");
    assert!(user["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).is_ok());
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
}

async fn register_rejects_invalid_fields_with_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = problem(
        app.register("not-an-email", "short", "   ").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut f = fields(&body);
    f.sort();
    assert_eq!(f, ["email", "name", "password"]);
    let long = "x".repeat(129);
    let body = problem(
        app.register("a@example.com", &long, "Ada").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["password"]);
    let body = problem(
        app.register("a@example.com", "12345678", &"n".repeat(101))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["name"]);
    // Missing and mistyped fields are named too.
    let body = problem(
        app.post(
            "/api/auth/register",
            None,
            json!({"email": "a@example.com", "name": "A"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["password"]);
    let body = problem(
        app.post(
            "/api/auth/register",
            None,
            json!({"email": 42, "password": "12345678", "name": "A"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&body), ["email"]);
    // Nothing was created along the way.
    json_of(
        app.register("a@example.com", "12345678", "Ada").await,
        StatusCode::CREATED,
    )
    .await;
}

async fn duplicate_email_is_409_whatever_the_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    json_of(
        app.register("grace@example.com", "password1", "Grace")
            .await,
        StatusCode::CREATED,
    )
    .await;
    let body = problem(
        app.register("GRACE@example.com ", "password2", "Other")
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(body["type"], "urn:rsvp:problem:email-taken");
}

async fn login_failure_looks_the_same_for_unknown_email_and_wrong_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    let wrong_password = problem(
        app.login(&user.email, "wrong password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let unknown_email = problem(
        app.login("nobody@example.com", "wrong password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let malformed_email = problem(
        app.login("nobody", "wrong password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password, malformed_email);

    let tokens = json_of(
        app.login(&user.email.to_uppercase(), &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 40);
}

async fn refresh_rotates_and_a_reused_token_revokes_the_family(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    let first = user.refresh_token.clone();
    let rotated = json_of(
        app.post("/api/auth/refresh", None, json!({"refresh_token": first}))
            .await,
        StatusCode::OK,
    )
    .await;
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    json_of(
        app.get(
            "/api/users/me",
            Some(rotated["access_token"].as_str().unwrap()),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // The first token was used: presenting it again is a theft signal and kills the family,
    // including the legitimately rotated second token.
    problem(
        app.post("/api/auth/refresh", None, json!({"refresh_token": first}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post("/api/auth/refresh", None, json!({"refresh_token": second}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Other sessions of the same user are untouched.
    let other = json_of(app.login(&user.email, &user.password).await, StatusCode::OK).await;
    json_of(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": "made-up"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post("/api/auth/refresh", None, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

async fn logout_revokes_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    let response = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(
        app.post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Logging out twice, or with an unknown token, is not an error.
    let response = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// The operator's rotation: the old key file becomes a retired key, a new one is generated; tokens
/// of both verify everywhere (the events service refetches the JWKS for the new key id) until
/// the retired key is dropped.
async fn signing_keys_rotate_without_logging_anyone_out(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let path = |name: &str| keys.path().join(name).display().to_string();
    let (old_key, new_key) = (path("old.pem"), path("new.pem"));
    let mut app = TestApp::spawn_with(backend, &[("auth.signing_key_path", &old_key)]).await;
    let before = app.user().await;
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_eq!(
        works(&app, &before.access_token).await,
        (StatusCode::OK, StatusCode::OK)
    );

    app.restart(&[
        ("auth.signing_key_path", &new_key),
        ("auth.retired_signing_key_paths", &old_key),
    ])
    .await;
    let after = app.user().await;
    assert_ne!(kid(&after.access_token), kid(&before.access_token));
    let jwks = json_of(
        app.get("/.well-known/jwks.json", None).await,
        StatusCode::OK,
    )
    .await;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        published,
        [kid(&after.access_token), kid(&before.access_token)]
    );
    for token in [&before.access_token, &after.access_token] {
        assert_eq!(works(&app, token).await, (StatusCode::OK, StatusCode::OK));
    }

    // Once the retired key is dropped, what it signed is refused everywhere.
    app.restart(&[("auth.retired_signing_key_paths", "")]).await;
    assert_eq!(
        works(&app, &before.access_token).await,
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        works(&app, &after.access_token).await,
        (StatusCode::OK, StatusCode::OK)
    );
}

/// What `/api/users/me` (users module) and `/api/users/me/registrations` (events module) say to
/// a token.
async fn works(app: &TestApp, token: &str) -> (StatusCode, StatusCode) {
    let me = app.get("/api/users/me", Some(token)).await.status();
    (
        me,
        app.get("/api/users/me/registrations", Some(token))
            .await
            .status(),
    )
}

async fn access_tokens_verify_with_the_published_jwks(backend: Backend) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let app = TestApp::spawn(backend).await;
    let user = app.user().await;
    let jwks = json_of(
        app.get("/.well-known/jwks.json", None).await,
        StatusCode::OK,
    )
    .await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key.get("d").is_none(), "private key material published");

    let header = decode_header(&user.access_token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["rsvp"]);
    let claims = decode::<serde_json::Value>(&user.access_token, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], user.id);
    assert_eq!(claims["role"], "member");
    assert!(claims["jti"].is_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
}

async fn protected_routes_refuse_missing_forged_and_expired_tokens(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("auth.access_ttl_secs", "1")]).await;
    let user = app.user().await;
    problem(
        app.get("/api/users/me", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.get("/api/users/me", Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // The payload changed after signing: the signature no longer matches.
    let mut parts: Vec<String> = user.access_token.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    problem(
        app.get("/api/users/me", Some(&parts.join("."))).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // An unsigned token is never accepted.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        user.access_token.split('.').nth(1).unwrap()
    );
    problem(
        app.get("/api/users/me", Some(&unsigned)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Past its lifetime (1 s here, plus the verifier's 5 s leeway) the token is refused.
    json_of(
        app.get("/api/users/me", Some(&user.access_token)).await,
        StatusCode::OK,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    problem(
        app.get("/api/users/me", Some(&user.access_token)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn malformed_bodies_get_400_413_415(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.url("/api/auth/register");
    let send = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut request = app.client.post(&url).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    problem(
        send(b"{\"email\": ".to_vec(), Some("application/json"))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        send(b"not json".to_vec(), Some("application/json"))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        send(b"{}".to_vec(), Some("text/plain")).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        send(b"{}".to_vec(), None).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let big = format!(
        "{{\"email\": \"a@example.com\", \"password\": \"12345678\", \"name\": \"{}\"}}",
        "x".repeat(70_000)
    );
    problem(
        send(big.into_bytes(), Some("application/json"))
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    // A charset parameter is fine.
    let ok = send(
        br#"{"email": "c@example.com", "password": "12345678", "name": "C"}"#.to_vec(),
        Some("application/json; charset=utf-8"),
    )
    .await
    .unwrap();
    json_of(ok, StatusCode::CREATED).await;
}

async fn auth_rate_limit_answers_429_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("gateway.auth_rate_per_minute", "3")]).await;
    for _ in 0..3 {
        problem(
            app.login("nobody@example.com", "whatever1").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let retry_after = rate_limited(app.login("nobody@example.com", "whatever1").await).await;
    assert!(retry_after <= 60, "Retry-After {retry_after}");
    // Only /api/auth/* is limited.
    json_of(app.get("/api/events", None).await, StatusCode::OK).await;
}

/// A login attempt that got through to the users module (and failed there).
const LET_THROUGH: StatusCode = StatusCode::UNAUTHORIZED;
const LIMITED: StatusCode = StatusCode::TOO_MANY_REQUESTS;

/// A login attempt from the client a trusted load balancer names in `X-Forwarded-For`.
async fn login_from(app: &TestApp, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap()
}

async fn login_attempts(app: &TestApp, attempts: &[(&str, StatusCode)]) {
    for (forwarded_for, expected) in attempts {
        let status = login_from(app, forwarded_for).await.status();
        assert_eq!(status, *expected, "X-Forwarded-For: {forwarded_for}");
    }
}

/// Checks a 429 problem and returns its `Retry-After`, in seconds (at least 1).
async fn rate_limited(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    problem(response, LIMITED).await;
    retry_after
}

async fn the_rate_limit_believes_forwarded_for_only_from_trusted_proxies(backend: Backend) {
    let limit = ("gateway.auth_rate_per_minute", "2");

    // Behind a trusted load balancer (the test client, on loopback), each client has its quota,
    // and forging the left part of the chain does not buy a new one.
    let trusted = ("gateway.trusted_proxies", "127.0.0.1, ::1");
    let app = TestApp::spawn_with(backend, &[limit, trusted]).await;
    login_attempts(
        &app,
        &[
            ("203.0.113.1", LET_THROUGH),
            ("203.0.113.1", LET_THROUGH),
            ("203.0.113.1", LIMITED),
            ("203.0.113.2", LET_THROUGH),
            ("198.51.100.1, 203.0.113.1", LIMITED),
        ],
    )
    .await;

    // At the edge (the default), the header is the client's own claim and is ignored.
    let app = TestApp::spawn_with(backend, &[limit]).await;
    login_attempts(
        &app,
        &[
            ("203.0.113.1", LET_THROUGH),
            ("203.0.113.2", LET_THROUGH),
            ("203.0.113.3", LIMITED),
        ],
    )
    .await;
}

/// Two gateway instances behind one load balancer, sharing a Redis, grant a client one quota
/// between them; with Redis unreachable an instance counts alone, without delaying anyone.
async fn gateway_instances_sharing_redis_share_the_auth_rate_limit(backend: Backend) {
    let Some(redis) = redis_url() else { return };
    // A client of this test's own (documentation range): runs sharing the Redis never meet.
    let mut address = *uuid::Uuid::new_v4().as_bytes();
    address[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    let client = std::net::Ipv6Addr::from(address).to_string();
    let client = client.as_str();
    fn settings(redis: &str) -> [(&'static str, &str); 3] {
        [
            ("gateway.auth_rate_per_minute", "3"),
            ("gateway.trusted_proxies", "127.0.0.1, ::1"),
            ("gateway.rate_limit_redis_url", redis),
        ]
    }
    let a = TestApp::spawn_with(backend, &settings(&redis)).await;
    let b = TestApp::spawn_with(backend, &settings(&redis)).await;
    login_attempts(&a, &[(client, LET_THROUGH), (client, LET_THROUGH)]).await;
    login_attempts(&b, &[(client, LET_THROUGH), (client, LIMITED)]).await;
    login_attempts(&a, &[(client, LIMITED)]).await;
    // One request per 20 s refills the quota.
    let retry_after = rate_limited(login_from(&b, client).await).await;
    assert!(retry_after <= 20, "Retry-After {retry_after}");

    let alone = TestApp::spawn_with(backend, &settings("redis://127.0.0.1:1")).await;
    let started = std::time::Instant::now();
    let mut attempts = vec![(client, LET_THROUGH); 3];
    attempts.push((client, LIMITED));
    login_attempts(&alone, &attempts).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
