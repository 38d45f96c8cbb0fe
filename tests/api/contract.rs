//! Contract tests of the cross-module trait: the same cases against the in-process users
//! module and against its HTTP client talking to a real users service. Both must answer alike.

use std::sync::Arc;

use reqwest::StatusCode;
use rsvp::{
    modules::users::{self, UsersApi, UsersClient},
    platform::{config::Settings, service_client::ServiceClient},
    topology::{self, split},
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::helpers::{Backend, TestDatabase, json_of, test_settings};

crate::backend_tests!(users_api_implementations_agree);

async fn users_api_implementations_agree(backend: Backend) {
    let db = TestDatabase::create(backend);
    let mut overrides = test_settings(&db);
    overrides.extend(
        [
            ("server.bind", "127.0.0.1:0"),
            ("topology.local_modules", "users"),
            ("service.credential", "contract-secret"),
            ("outbox.relay_enabled", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
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

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = serde_json::json!({"email": format!("c{i}@example.com"), "password": "password1", "name": format!("Name {i}")});
        let user = json_of(
            http.post(format!("{address}/api/auth/register"))
                .json(&body)
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        ids.push(user["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }

    let db_handle = topology::connect(&settings, &[&users::MIGRATIONS])
        .await
        .unwrap();
    let in_process: Arc<dyn UsersApi> =
        topology::users_service(&settings, db_handle, Arc::new(Notify::new()))
            .await
            .unwrap();
    let client = ServiceClient::new("users", vec![address.clone()], &settings.service).unwrap();
    let over_http: Arc<dyn UsersApi> = Arc::new(UsersClient::new(Arc::new(client)));

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
    let gone = ServiceClient::new(
        "users",
        vec!["http://127.0.0.1:9".into()],
        &settings.service,
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(
        UsersClient::new(Arc::new(gone))
            .public_profiles(&ids)
            .await
            .is_err()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}
