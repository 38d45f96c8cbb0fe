//! Compression: every kind of text answer in `br` or `gzip` when the client accepts it, the same
//! text once decoded, never for a client that does not ask, and never stale (a list page is kept
//! compressed between changes).

use std::io::Read;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

crate::backend_tests!(
    text_answers_are_compressed_when_the_client_accepts_it,
    a_kept_compressed_page_follows_every_change,
);

/// `path` with `Accept-Encoding: accept` (none when `None`): status, `Content-Encoding`, `Vary`
/// and the body as sent.
async fn fetch(app: &TestApp, method: Method, path: &str, accept: Option<&str>) -> Answer {
    let mut request = app.client.request(method, app.url(path));
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    let response = request.send().await.expect("request sent");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status(),
        coding: header("content-encoding"),
        vary: header("vary"),
        etag: header("etag"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

struct Answer {
    status: StatusCode,
    coding: Option<String>,
    vary: Option<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// The body decoded from its `Content-Encoding`.
    fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.coding.as_deref() {
            None => out.clone_from(&self.body),
            Some("br") => {
                brotli::Decompressor::new(&self.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("valid brotli");
            }
            Some("gzip") => {
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            Some(other) => panic!("unexpected coding {other}"),
        }
        out
    }
}

async fn text_answers_are_compressed_when_the_client_accepts_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organiser = app.user().await;
    let mut id = String::new();
    for i in 0..8 {
        let event = app
            .event(
                &organiser,
                5,
                json!({"title": format!("Compressed {i}"), "time_zone": "Europe/Berlin",
                    "description": "Talks, then coffee. ".repeat(10)}),
            )
            .await;
        id = event["id"].as_str().unwrap().to_owned();
    }
    // The whole app, the documents, a list page (kept), a share page and a calendar file (each
    // made per request): every kind of text the API answers with, each over a kilobyte.
    let paths = [
        "/".to_owned(),
        "/assets/app.js".to_owned(),
        "/assets/app.css".to_owned(),
        "/api/openapi.json".to_owned(),
        "/api/docs".to_owned(),
        "/api/events?limit=100".to_owned(),
        format!("/events/{id}"),
        format!("/api/events/{id}/calendar.ics"),
    ];
    for path in &paths {
        let plain = fetch(&app, Method::GET, path, None).await;
        assert_eq!(plain.status, StatusCode::OK, "{path}");
        assert_eq!(
            plain.coding, None,
            "{path}: nothing asked, nothing compressed"
        );
        assert_eq!(plain.vary.as_deref(), Some("accept-encoding"), "{path}");
        assert!(
            plain.body.len() >= 1024,
            "{path}: {} bytes",
            plain.body.len()
        );
        for (accept, coding) in [
            ("br", Some("br")),
            ("gzip", Some("gzip")),
            ("gzip, deflate, br", Some("br")),
            ("br;q=0.4, gzip;q=0.8", Some("gzip")),
            ("br;q=0, gzip;q=0", None),
            ("identity", None),
            ("deflate, zstd", None),
        ] {
            let answer = fetch(&app, Method::GET, path, Some(accept)).await;
            assert_eq!(answer.status, StatusCode::OK, "{path} {accept}");
            assert_eq!(answer.coding.as_deref(), coding, "{path} {accept}");
            assert_eq!(
                without_stamp(&answer.decoded()),
                without_stamp(&plain.body),
                "{path} {accept}: the same text"
            );
            assert_eq!(answer.vary.as_deref(), Some("accept-encoding"), "{path}");
            if coding.is_some() {
                assert!(
                    answer.body.len() < plain.body.len(),
                    "{path} {accept}: smaller"
                );
            }
        }
        // HEAD says what GET would send.
        let head = fetch(&app, Method::HEAD, path, Some("br")).await;
        assert_eq!(head.coding.as_deref(), Some("br"), "HEAD {path}");
    }

    // A compressed file is the same file in another coding: a weak validator, still good for a
    // 304 whichever coding the client sees.
    let app_js = fetch(&app, Method::GET, "/assets/app.js", Some("gzip")).await;
    let etag = app_js.etag.expect("an ETag");
    assert!(etag.starts_with("W/\""), "{etag}");
    let plain_js = fetch(&app, Method::GET, "/assets/app.js", None).await;
    assert_eq!(
        plain_js.etag.as_deref(),
        Some(etag.as_str()),
        "one validator per file"
    );
    for accept in ["gzip", "br", "identity"] {
        let revalidated = app
            .client
            .get(app.url("/assets/app.js"))
            .header("accept-encoding", accept)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED, "{accept}");
        // A 304 carries the validator the 200 did.
        assert_eq!(
            revalidated.headers()["etag"].to_str().unwrap(),
            etag,
            "{accept}"
        );
    }

    // A small answer (one event) goes out as it is; an image is never compressed again.
    let one = fetch(&app, Method::GET, &format!("/api/events/{id}"), Some("br")).await;
    assert!(one.body.len() < 1024, "{} bytes", one.body.len());
    assert_eq!(one.coding, None);
    assert_eq!(one.vary.as_deref(), Some("accept-encoding"));
    // A refusal is text too: small, so as it is.
    let refused = fetch(&app, Method::GET, "/api/events?limit=0", Some("br")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.coding, None);
}

/// The list page kept with its compressed forms is made again when any event on it changes:
/// an edit, a sign-up (seats), a cancellation, a new event.
async fn a_kept_compressed_page_follows_every_change(backend: Backend) {
    // Entries live a minute: what the test sees is the change, never an entry aging out.
    let app = TestApp::spawn_with(backend, &[("cache.ttl_ms", "60000")]).await;
    let organiser = app.user().await;
    let attendee = app.user().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let event = app
            .event(
                &organiser,
                3,
                json!({"title": format!("Kept {i}"), "description": "x".repeat(300)}),
            )
            .await;
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    let page = |coding: &'static str| {
        let app = &app;
        async move {
            let answer = fetch(app, Method::GET, "/api/events?limit=50", Some(coding)).await;
            assert_eq!(answer.coding.as_deref(), Some(coding));
            serde_json::from_slice::<Value>(&answer.decoded()).unwrap()
        }
    };
    let read_twice = || async {
        for coding in ["br", "gzip"] {
            // Read twice: the second is the kept page.
            page(coding).await;
            page(coding).await;
        }
    };
    // A seat taken changes the event's JSON but not which events the page holds.
    read_twice().await;
    let signed = app
        .post(
            &format!("/api/events/{}/registrations", ids[4]),
            Some(&attendee.access_token),
            json!({}),
        )
        .await;
    assert_eq!(signed.status(), StatusCode::CREATED);
    app.invalidated("the seat on the kept page", || async {
        for coding in ["br", "gzip"] {
            if event_on(&page(coding).await, &ids[4]).unwrap()["seats_taken"] != 1 {
                return false;
            }
        }
        true
    })
    .await;

    // An edit, a cancellation, a new event.
    read_twice().await;
    let token = Some(organiser.access_token.as_str());
    let edited = app
        .patch(
            &format!("/api/events/{}", ids[2]),
            token,
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(edited.status(), StatusCode::OK);
    let cancelled = app.delete(&format!("/api/events/{}", ids[5]), token).await;
    assert!(cancelled.status().is_success());
    let added = app
        .event(
            &organiser,
            3,
            json!({"title": "Added later", "description": "y".repeat(300)}),
        )
        .await;
    let added = added["id"].as_str().unwrap();
    app.invalidated("the changes on the kept page", || async {
        for coding in ["br", "gzip"] {
            let now = page(coding).await;
            if event_on(&now, &ids[2]).unwrap()["title"] != "Renamed"
                || event_on(&now, &ids[5]).is_some() // cancelled: off the default list
                || event_on(&now, added).is_none()
            {
                return false;
            }
        }
        true
    })
    .await;

    // The organiser's new name, shown on every event of theirs.
    read_twice().await;
    let renamed = app
        .patch(
            "/api/users/me",
            token,
            json!({"name": "Olga Renamed", "current_password": organiser.password}),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    app.invalidated("the organiser's name on the kept page", || async {
        for coding in ["br", "gzip"] {
            let now = page(coding).await;
            if event_on(&now, &ids[0]).unwrap()["organizer"]["name"] != "Olga Renamed" {
                return false;
            }
        }
        true
    })
    .await;
    // The same page, as a client that does not compress reads it.
    let plain = fetch(&app, Method::GET, "/api/events?limit=50", None).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&plain.body).unwrap(),
        page("br").await
    );
}

fn event_on<'a>(page: &'a Value, id: &str) -> Option<&'a Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
}

/// The text without a calendar's `DTSTAMP` (when it was made: RFC 5545 asks for the current
/// time, so two fetches a second apart differ there and nowhere else).
fn without_stamp(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .split("\r\n")
        .filter(|line| !line.starts_with("DTSTAMP:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}
