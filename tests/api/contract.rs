//! Contract tests of the seams between modules: each trait with an in-process implementation
//! (the monolith) and a remote one (the split build) runs the same cases against both, and both
//! must answer alike.
//!
//! - `UsersApi`: `UsersService` against `UsersApiRemote` (the kit's client) talking to a real
//!   users service;
//! - `TokenVerifier`: the key pair in process against `JwksVerifier` fetching that service's JWKS;
//! - `EventPublisher` + `EventHandler`: the in-process bus against NATS JetStream.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use modkit::events::{
    DeliveryError, DomainEvent, EventHandler, EventPublisher, InProcessBus, Subscription,
};
use modkit::nats::{self, NatsPublisher};
use reqwest::StatusCode;
use rsvp::{
    config::Settings,
    modules::users::{self, SigningKeys, UsersApi, UsersApiError, UsersApiRemote, UsersService},
    platform::{
        auth::{Claims, KeySetVerifier, Role, TokenError, TokenVerifier},
        jwks::JwksVerifier,
        remote,
    },
    topology::{self, split},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestDatabase, json_of, test_settings};

crate::backend_tests!(users_api_implementations_agree, token_verifiers_agree);

/// The users module twice over one database and one signing key: as a running users service
/// (split build, on a free port) and in process, as the monolith hosts it.
struct UsersSides {
    settings: Settings,
    address: String,
    in_process: Arc<UsersService>,
    _db: TestDatabase,
}

impl UsersSides {
    async fn start(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create(backend);
        let mut overrides = test_settings(&db);
        overrides.extend(
            [
                ("server.bind", "127.0.0.1:0"),
                ("topology.local_modules", "users"),
                ("service.credential", "contract-secret"),
                ("outbox.relay_enabled", "false"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let overrides: Vec<(&str, &str)> = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let settings = Settings::with_overrides(&overrides).unwrap();

        let service = split::build(settings.clone())
            .await
            .expect("users service starts");
        let address = format!("http://127.0.0.1:{}", service.port());
        tokio::spawn(service.run_until_stopped());

        let process = topology::process(&settings, &[&users::MODULE])
            .await
            .unwrap();
        let in_process = users::service(&process).await.unwrap();
        Self {
            settings,
            address,
            in_process,
            _db: db,
        }
    }

    fn client(&self) -> Arc<modkit::Remote> {
        self.client_of(&self.address)
    }

    fn client_of(&self, address: &str) -> Arc<modkit::Remote> {
        remote::client("users", &[address.into()], &self.settings.service).unwrap()
    }

    /// Registers through the service's public API; returns the new user's id.
    async fn register(&self, email: &str, name: &str) -> Uuid {
        let body = json!({"email": email, "password": "password1", "name": name});
        let user = self
            .post("/api/auth/register", &body, StatusCode::CREATED)
            .await;
        user["id"].as_str().unwrap().parse().unwrap()
    }

    async fn post(&self, path: &str, body: &Value, expected: StatusCode) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .unwrap();
        json_of(response, expected).await
    }
}

/// A users service nobody listens for: port 9 (discard) is closed on loopback.
const NOBODY: &str = "http://127.0.0.1:9";

async fn users_api_implementations_agree(backend: Backend) {
    let sides = UsersSides::start(backend, &[]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            sides
                .register(&format!("c{i}@example.com"), &format!("Name {i}"))
                .await,
        );
    }
    let in_process: Arc<dyn UsersApi> = sides.in_process.clone();
    let over_http: Arc<dyn UsersApi> = Arc::new(UsersApiRemote::new(sides.client()));

    let unknown = Uuid::new_v4();
    let many: Vec<Uuid> = (0..2500)
        .map(|i| {
            if i % 1000 == 0 {
                ids[0]
            } else {
                Uuid::new_v4()
            }
        })
        .collect();
    let cases: Vec<(&str, Vec<Uuid>)> = vec![
        ("empty batch", vec![]),
        ("one known id", vec![ids[0]]),
        ("known and unknown ids", vec![ids[2], unknown, ids[1]]),
        ("only unknown ids", vec![unknown]),
        ("a batch larger than one call carries", many),
    ];
    for (case, batch) in cases {
        let mut a = in_process.public_profiles(&batch).await.unwrap();
        let mut b = over_http.public_profiles(&batch).await.unwrap();
        a.sort_by_key(|p| p.id);
        b.sort_by_key(|p| p.id);
        assert_eq!(a, b, "{case}: implementations disagree");
        let expected: usize = ids.iter().filter(|id| batch.contains(id)).count();
        assert_eq!(a.len(), expected, "{case}");
    }
    let named = in_process.public_profiles(&[ids[1]]).await.unwrap();
    assert_eq!(named[0].name, "Name 1");

    // A client whose service is gone fails as `Unavailable`, quickly.
    let started = Instant::now();
    let gone = UsersApiRemote::new(sides.client_of(NOBODY));
    let failed = gone.public_profiles(&ids).await;
    assert!(
        matches!(failed, Err(UsersApiError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A client with the wrong credential is refused, and says so: a misconfiguration is not an
    // outage (before the kit, both read "unavailable" and names silently went missing).
    let mut wrong = sides.settings.service.clone();
    wrong.credential = "not the deployment's secret".into();
    let intruder = UsersApiRemote::new(
        remote::client("users", std::slice::from_ref(&sides.address), &wrong).unwrap(),
    );
    let refused = intruder.public_profiles(&ids).await;
    assert!(
        matches!(refused, Err(UsersApiError::Rejected(_))),
        "{refused:?}"
    );
}

async fn token_verifiers_agree(backend: Backend) {
    let keys_dir = tempfile::tempdir().unwrap();
    let retired_path = keys_dir.path().join("retired.pem");
    let retired = SigningKeys::load(&retired_path, &[]).unwrap();
    let sides = UsersSides::start(
        backend,
        &[(
            "auth.retired_signing_key_paths",
            retired_path.to_str().unwrap(),
        )],
    )
    .await;
    let issuer = sides.settings.auth.issuer.clone();
    let current = SigningKeys::from_pem(
        &std::fs::read_to_string(&sides.settings.auth.signing_key_path).unwrap(),
    )
    .unwrap();
    let stranger = SigningKeys::load(&keys_dir.path().join("stranger.pem"), &[]).unwrap();

    let in_process: Arc<dyn TokenVerifier> =
        Arc::new(KeySetVerifier::new(&issuer, &sides.in_process.keys().jwks()).unwrap());
    let over_http: Arc<dyn TokenVerifier> =
        Arc::new(JwksVerifier::new(issuer.clone(), sides.client()));

    sides.register("token@example.com", "Token").await;
    let login = json!({"email": "token@example.com", "password": "password1"});
    let pair = sides.post("/api/auth/login", &login, StatusCode::OK).await;
    let issued = pair["access_token"].as_str().unwrap().to_owned();

    let now = Utc::now().timestamp();
    let claims = Claims {
        sub: Uuid::new_v4(),
        role: Role::Member,
        iss: issuer.clone(),
        iat: now,
        exp: now + 300,
        jti: Uuid::new_v4(),
    };
    let sign = |keys: &SigningKeys, header: Header, claims: &Claims| {
        jsonwebtoken::encode(&header, claims, keys.encoding_key()).unwrap()
    };
    let no_kid = Header {
        kid: None,
        ..current.header()
    };
    let borrowed_kid = Header {
        kid: Some(current.kid().to_owned()),
        ..stranger.header()
    };
    let hmac_with_public_key = {
        let x = URL_SAFE_NO_PAD.decode(&current.jwks().keys[0].x).unwrap();
        let header = Header {
            kid: Some(current.kid().to_owned()),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&x)).unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD
            .encode(json!({"alg": "none", "typ": "JWT", "kid": current.kid()}).to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
    );
    let promoted = {
        let token = sign(&current, current.header(), &claims);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        payload["role"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        parts.join(".")
    };

    let cases: Vec<(&str, String, bool)> = vec![
        ("issued at login", issued, true),
        (
            "signed by the current key",
            sign(&current, current.header(), &claims),
            true,
        ),
        (
            "signed by a retired key",
            sign(&retired, retired.header(), &claims),
            true,
        ),
        (
            "expired",
            sign(
                &current,
                current.header(),
                &Claims {
                    exp: now - 60,
                    ..claims.clone()
                },
            ),
            false,
        ),
        (
            "another issuer",
            sign(
                &current,
                current.header(),
                &Claims {
                    iss: "elsewhere".into(),
                    ..claims.clone()
                },
            ),
            false,
        ),
        (
            "signed by a key nobody published",
            sign(&stranger, stranger.header(), &claims),
            false,
        ),
        (
            "a published key id over another key's signature",
            sign(&stranger, borrowed_kid, &claims),
            false,
        ),
        ("no key id", sign(&current, no_kid, &claims), false),
        ("payload altered after signing", promoted, false),
        ("alg none", unsigned, false),
        (
            "HS256 keyed with the public key",
            hmac_with_public_key,
            false,
        ),
        ("not a JWT", "not.a.token".into(), false),
        ("empty", String::new(), false),
    ];
    for (case, token, valid) in cases {
        let a = in_process.verify(&token).await;
        let b = over_http.verify(&token).await;
        match (&a, &b) {
            (Ok(a), Ok(b)) => {
                assert!(valid, "{case}: both accepted a token that must be refused");
                assert_eq!(
                    serde_json::to_value(a).unwrap(),
                    serde_json::to_value(b).unwrap(),
                    "{case}: the claims differ"
                );
            }
            (Err(a), Err(b)) => {
                assert!(!valid, "{case}: both refused a valid token ({a}; {b})");
                // A refusal is a 401, never "keys unavailable" (503): the service is up.
                assert!(!matches!(b, TokenError::KeysUnavailable(_)), "{case}: {b}");
            }
            _ => panic!("{case}: implementations disagree: {a:?} against {b:?}"),
        }
    }

    // With the users service gone, the JWKS side says so (a 503 upstream), quickly.
    let started = Instant::now();
    let cut_off = JwksVerifier::new(issuer.clone(), sides.client_of(NOBODY));
    let token = sign(&current, current.header(), &claims);
    assert!(matches!(
        cut_off.verify(&token).await,
        Err(TokenError::KeysUnavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Once the keys are known, a token naming another key is refused (401) while the users
    // service is down, not blamed on the outage (503); and a users service that fails is asked
    // once per cool-down, not once per token.
    let retries = sides.settings.service.retries as usize;
    let jwks = serde_json::to_string(&sides.in_process.keys().jwks()).unwrap();
    let (address, calls) = failing_users_service(Some(jwks)).await;
    let flaky = JwksVerifier::new(issuer.clone(), sides.client_of(&address));
    assert!(flaky.verify(&token).await.is_ok());
    let strangers = sign(&stranger, stranger.header(), &claims);
    for _ in 0..10 {
        let refused = flaky.verify(&strangers).await;
        assert!(
            matches!(refused, Err(TokenError::UnknownKey(_))),
            "{refused:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "within the cool-down");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..10 {
        let refused = flaky.verify(&strangers).await;
        assert!(
            matches!(refused, Err(TokenError::UnknownKey(_))),
            "{refused:?}"
        );
    }
    let calls_made = calls.load(Ordering::SeqCst) - 1;
    assert!(
        (1..=1 + retries).contains(&calls_made),
        "one fetch after the cool-down, not one per token: {calls_made} calls"
    );
    // Without any key yet, every token waits for the users service: unavailable, asked once.
    let (address, calls) = failing_users_service(None).await;
    let never = JwksVerifier::new(issuer, sides.client_of(&address));
    for _ in 0..10 {
        let refused = never.verify(&token).await;
        assert!(
            matches!(refused, Err(TokenError::KeysUnavailable(_))),
            "{refused:?}"
        );
    }
    let calls_made = calls.load(Ordering::SeqCst);
    assert!(
        (1..=1 + retries).contains(&calls_made),
        "{calls_made} calls"
    );
}

/// A users service that publishes `jwks` on its first call (when given) and answers 503 to every
/// other, counting the calls. Its address, and the count.
async fn failing_users_service(jwks: Option<String>) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            let answer = match (&jwks, call) {
                (Some(jwks), 0) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                    jwks.len()
                ),
                _ => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\
                      connection: close\r\n\r\n"
                    .to_owned(),
            };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, calls)
}

/// The topics of the contract's handler: it wants `user.deleted` only.
const WANTED: &str = "user.deleted";
const UNWANTED: &str = "user.renamed";

/// A consumer that records every event it handled and fails the first attempt at the events it
/// was told to, as a handler whose database hiccups would.
#[derive(Default)]
struct Recorder {
    handled: Mutex<Vec<DomainEvent>>,
    fail_first_attempt: Mutex<HashSet<Uuid>>,
}

impl Recorder {
    fn handled(&self) -> Vec<DomainEvent> {
        self.handled.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventHandler for Recorder {
    fn topics(&self) -> &'static [&'static str] {
        &[WANTED]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        if self.fail_first_attempt.lock().unwrap().remove(&event.id) {
            return Err(DeliveryError::because("first attempt fails"));
        }
        self.handled.lock().unwrap().push(event.clone());
        Ok(())
    }
}

fn domain_event(topic: &str) -> DomainEvent {
    DomainEvent {
        id: Uuid::now_v7(),
        topic: topic.into(),
        payload: json!({"user_id": Uuid::new_v4()}),
        // Whole microseconds: what a database and JSON carry.
        occurred_at: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
            .unwrap(),
    }
}

/// What an outbox relay does: publish, and keep the event to try again while that fails.
async fn publish_until_delivered(publisher: &dyn EventPublisher, event: &DomainEvent) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = publisher.publish(event).await {
        assert!(Instant::now() < deadline, "never delivered: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same sequence against both wirings: a wanted event, an unwanted one, and a wanted one
/// whose first handling fails. The handler ends up with both wanted events, equal to what was
/// published, and never sees the unwanted one.
async fn publish_and_consume(name: &str, publisher: &dyn EventPublisher, recorder: &Recorder) {
    let plain = domain_event(WANTED);
    let unwanted = domain_event(UNWANTED);
    let flaky = domain_event(WANTED);
    recorder.fail_first_attempt.lock().unwrap().insert(flaky.id);
    for event in [&plain, &unwanted, &flaky] {
        publish_until_delivered(publisher, event).await;
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let handled = loop {
        let handled = recorder.handled();
        if [&plain, &flaky].iter().all(|e| handled.contains(e)) {
            break handled;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: handled only {handled:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        handled.iter().all(|e| e.topic == WANTED),
        "{name}: an unwanted topic reached the handler: {handled:?}"
    );
}

crate::tests!(event_buses_agree);

async fn event_buses_agree() {
    let in_process = Arc::new(Recorder::default());
    let bus = InProcessBus::default().subscribe(in_process.clone());
    publish_and_consume("in-process bus", &bus, &in_process).await;

    let id = Uuid::new_v4().simple().to_string();
    let stream = format!("T_{id}");
    let settings = Settings::with_overrides(&[
        ("nats.stream", stream.as_str()),
        ("nats.subject_prefix", format!("t_{id}").as_str()),
        ("nats.consumer", "contract"),
    ])
    .unwrap()
    .nats;
    let js = nats::connect(&settings)
        .await
        .expect("NATS on 127.0.0.1:4222");
    let over_nats = Arc::new(Recorder::default());
    nats::spawn_subscription(
        js.clone(),
        settings.clone(),
        "contract".into(),
        Subscription::work_queue(over_nats.clone()),
    );
    let publisher = NatsPublisher::new(js.clone(), &settings);
    publish_and_consume("NATS JetStream", &publisher, &over_nats).await;

    // The broker also drops a republished event (the relay crashed before marking it sent).
    let event = domain_event(WANTED);
    publish_until_delivered(&publisher, &event).await;
    publish_until_delivered(&publisher, &event).await;
    let sentinel = domain_event(WANTED);
    publish_until_delivered(&publisher, &sentinel).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !over_nats.handled().contains(&sentinel) {
        assert!(Instant::now() < deadline, "sentinel never handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let copies = over_nats
        .handled()
        .iter()
        .filter(|e| e.id == event.id)
        .count();
    assert_eq!(
        copies, 1,
        "a republished event was delivered {copies} times"
    );

    let _ = js.delete_stream(&stream).await;
}
