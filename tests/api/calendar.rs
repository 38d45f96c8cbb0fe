//! Events in calendars and in chats: an event's `.ics` file, read by a real calendar library
//! (Python's `icalendar`, `tests/calendar/read.py`), and its share page with Open Graph tags.

use chrono::{Datelike, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, event_body, json_of, problem};

crate::backend_tests!(
    calendar: an_event_is_a_calendar_file_a_real_calendar_reads,
    a_calendar_feed_lists_my_events_until_it_is_replaced_or_stopped,
);
crate::backend_tests!(a_shared_link_previews_the_event);

/// `month`/15 of next year at `hour`:00 UTC, as RFC 3339.
fn next_year(month: u32, hour: u32) -> String {
    Utc.with_ymd_and_hms(Utc::now().year() + 1, month, 15, hour, 0, 0)
        .unwrap()
        .to_rfc3339()
}

async fn create(app: &TestApp, who: &TestUser, extra: Value) -> Value {
    let mut body = event_body(10);
    crate::helpers::merge(&mut body, extra);
    json_of(
        app.post("/api/events", Some(&who.access_token), body).await,
        StatusCode::CREATED,
    )
    .await
}

/// The event's calendar file as the calendar library reads it.
async fn read_calendar(app: &TestApp, id: &str) -> Value {
    read_calendar_at(app, &format!("/api/events/{id}/calendar.ics")).await["events"][0].clone()
}

/// The calendar at `path` as the calendar library reads it (every event).
async fn read_calendar_at(app: &TestApp, path: &str) -> Value {
    let response = app.get(path, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/calendar"), "{content_type}");
    let ics = response.bytes().await.unwrap();
    assert!(
        ics.split(|b| *b == b'\n').all(|line| line.len() <= 76),
        "lines are folded at 75 octets"
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/calendar/read.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 reads the calendar");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&ics).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the calendar library refused the file: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&ics)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An event's `.ics`, read by a real calendar library: its times at the venue in its zone (and
/// the file's own VTIMEZONE agreeing with the library's zone, winter and summer), its text exactly
/// as written, a stable UID, a SEQUENCE raised by each change of time or place (not by a new
/// title), STATUS:CANCELLED once cancelled.
async fn an_event_is_a_calendar_file_a_real_calendar_reads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let title = "Rust, Coffee; and \\ more: a very long title that a calendar must fold — ünïcödé";
    let description = "Line one, with a comma;\nline two.";
    let event = create(
        &app,
        &ada,
        json!({
            "title": title, "description": description, "location": "Hall 1, Berlin",
            "time_zone": "Europe/Berlin",
            "starts_at": next_year(1, 18), "ends_at": next_year(1, 20),
        }),
    )
    .await;
    let id = event["id"].as_str().unwrap().to_owned();
    let read = read_calendar(&app, &id).await;
    assert_eq!(read["uid"], format!("{id}@rsvp"));
    assert_eq!(read["tzid"], "Europe/Berlin");
    assert_eq!(
        read["local_start"].as_str().unwrap()[11..],
        *"19:00:00",
        "{read}"
    );
    assert_eq!(read["start"], next_year(1, 18).replace("+00:00", "Z"));
    assert_eq!(read["end"], next_year(1, 20).replace("+00:00", "Z"));
    assert_eq!(read["start_offset_by_library"], 3600.0);
    assert_eq!(
        read["start_offset_by_file"], 3600.0,
        "the file's VTIMEZONE says CET"
    );
    assert_eq!(read["summary"], title);
    assert_eq!(read["description"], description);
    assert_eq!(read["location"], "Hall 1, Berlin");
    assert_eq!(read["status"], "CONFIRMED");
    assert_eq!(read["sequence"], 0);
    assert!(
        read["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/events/{id}")),
        "{read}"
    );

    let path = format!("/api/events/{id}");
    let change = |body: Value| app.patch(&path, Some(&ada.access_token), body);
    json_of(change(json!({"title": "Renamed"})).await, StatusCode::OK).await;
    assert_eq!(
        read_calendar(&app, &id).await["sequence"],
        0,
        "a new title moves nothing"
    );
    json_of(
        change(json!({"starts_at": next_year(7, 17), "ends_at": next_year(7, 19)})).await,
        StatusCode::OK,
    )
    .await;
    let summer = read_calendar(&app, &id).await;
    assert_eq!(summer["sequence"], 1);
    assert_eq!(
        summer["local_start"].as_str().unwrap()[11..],
        *"19:00:00",
        "{summer}"
    );
    assert_eq!(
        summer["start_offset_by_file"], 7200.0,
        "the file's VTIMEZONE says CEST"
    );
    json_of(change(json!({"location": "Hall 2"})).await, StatusCode::OK).await;
    assert_eq!(read_calendar(&app, &id).await["sequence"], 2);
    let cancelled = app.delete(&path, Some(&ada.access_token)).await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let cancelled = read_calendar(&app, &id).await;
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["sequence"].as_i64()),
        (Some("CANCELLED"), Some(3))
    );
    assert_eq!(
        cancelled["uid"],
        format!("{id}@rsvp"),
        "the same event for the calendar"
    );

    // No zone: UTC instants; a zone without summer time: its one offset.
    let utc = create(&app, &ada, json!({})).await;
    let read = read_calendar(&app, utc["id"].as_str().unwrap()).await;
    let starts: chrono::DateTime<Utc> = utc["starts_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(read["tzid"], Value::Null);
    assert_eq!(
        read["start"],
        starts.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    let tokyo = create(&app, &ada, json!({"time_zone": "Asia/Tokyo", "starts_at": next_year(7, 10), "ends_at": next_year(7, 12)})).await;
    let read = read_calendar(&app, tokyo["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            read["start_offset_by_file"].clone(),
            read["local_start"].as_str().unwrap()[11..].to_owned()
        ),
        (json!(32400.0), "19:00:00".to_owned())
    );

    problem(
        app.get(
            &format!("/api/events/{}/calendar.ics", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// A link to an event pasted in a chat previews it: a server-rendered page with Open Graph
/// tags (title, the time at the venue, the place, the seats), user text escaped, http(s) links in
/// it clickable and nothing else, under a policy that allows no script and no framing; it leads
/// into the web app.
async fn a_shared_link_previews_the_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let event = create(
        &app,
        &ada,
        json!({
            "title": "<b>\"Rust\" & Tea</b>",
            "description": "Slides: https://example.org/talk?a=1&b=2. Not a link: javascript:alert(1)",
            "location": "Hamburg",
            "time_zone": "Europe/Berlin",
            "starts_at": next_year(1, 18), "ends_at": next_year(1, 20),
        }),
    )
    .await;
    let id = event["id"].as_str().unwrap();
    let response = app.get(&format!("/events/{id}"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("frame-ancestors 'none'") && !policy.contains("script-src"),
        "{policy}"
    );
    let page = response.text().await.unwrap();
    let escaped_title = "&lt;b&gt;&quot;Rust&quot; &amp; Tea&lt;/b&gt;";
    assert!(
        page.contains(&format!(
            "<meta property=\"og:title\" content=\"{escaped_title}\">"
        )),
        "{page}"
    );
    assert!(!page.contains("<b>"), "user text stays text");
    let description = page
        .split("<meta property=\"og:description\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("og:description");
    assert!(
        description.contains("19:00") && description.contains("CET (Europe/Berlin)"),
        "{description}"
    );
    assert!(
        description.contains("Hamburg") && description.contains("0 of 10 seats taken"),
        "{description}"
    );
    assert!(
        page.contains("<meta property=\"og:url\" content=\"")
            && page.contains(&format!("/events/{id}\">"))
    );
    assert!(
        page.contains(&format!("href=\"/#/events/{id}\"")),
        "a way into the web app"
    );
    assert!(page.contains(&format!("href=\"/api/events/{id}/calendar.ics\"")));
    assert!(
        page.contains(
            "<a href=\"https://example.org/talk?a=1&amp;b=2\" rel=\"noopener noreferrer nofollow\">"
        ),
        "{page}"
    );
    assert!(!page.contains("href=\"javascript"), "{page}");
    let head = app
        .request(Method::HEAD, &format!("/events/{id}"), None, None)
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    let missing = app
        .get(&format!("/events/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let garbage = app.get("/events/not-an-id", None).await;
    assert!(garbage.status().is_client_error(), "{}", garbage.status());
}

/// A person's calendar feed, read by a real calendar library: the events they registered for
/// (a seat confirmed, a waitlist place tentative), following their withdrawals; a new address
/// stops the old one, stopping the feed stops it, and a deleted account's feed is gone.
async fn a_calendar_feed_lists_my_events_until_it_is_replaced_or_stopped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (organiser, ada, bob) = (app.user().await, app.user().await, app.user().await);
    let one = create(
        &app,
        &organiser,
        json!({"title": "One", "time_zone": "Europe/Berlin"}),
    )
    .await;
    let mut full = event_body(1);
    crate::helpers::merge(&mut full, json!({"title": "Full"}));
    let full = json_of(
        app.post("/api/events", Some(&organiser.access_token), full)
            .await,
        StatusCode::CREATED,
    )
    .await;
    for (who, event) in [(&ada, &one), (&bob, &full), (&ada, &full)] {
        let path = format!(
            "/api/events/{}/registrations",
            event["id"].as_str().unwrap()
        );
        json_of(
            app.post(&path, Some(&who.access_token), json!({})).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let new_feed = |who: &TestUser| {
        let (app, token) = (&app, who.access_token.clone());
        async move {
            let response = app
                .post("/api/users/me/calendar-feed", Some(&token), json!({}))
                .await;
            assert_eq!(response.headers()["cache-control"], "no-store");
            let url = json_of(response, StatusCode::CREATED).await["url"]
                .as_str()
                .unwrap()
                .to_owned();
            let path = url
                .find("/api/calendar/")
                .map(|at| url[at..].to_owned())
                .expect("a feed address");
            assert!(path.ends_with(".ics"), "{url}");
            path
        }
    };
    let titles = |calendar: &Value| -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = calendar["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["summary"].as_str().unwrap().to_owned(),
                    e["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let feed = new_feed(&ada).await;
    let read = read_calendar_at(&app, &feed).await;
    assert_eq!(read["name"], "rsvp: my events");
    assert_eq!(
        titles(&read),
        [
            ("Full".to_owned(), "TENTATIVE".to_owned()),
            ("One".to_owned(), "CONFIRMED".to_owned())
        ]
    );
    // Bob's feed is his.
    let bobs = new_feed(&bob).await;
    assert_eq!(
        titles(&read_calendar_at(&app, &bobs).await),
        [("Full".to_owned(), "CONFIRMED".to_owned())]
    );
    // A withdrawal leaves the feed.
    let seat = format!(
        "/api/events/{}/registrations/me",
        one["id"].as_str().unwrap()
    );
    assert_eq!(
        app.delete(&seat, Some(&ada.access_token)).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        titles(&read_calendar_at(&app, &feed).await),
        [("Full".to_owned(), "TENTATIVE".to_owned())]
    );
    // A new address stops the old.
    let renewed = new_feed(&ada).await;
    assert_ne!(renewed, feed);
    assert_eq!(app.get(&feed, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&renewed, None).await.status(), StatusCode::OK);
    // Stopping it stops it.
    assert_eq!(
        app.delete("/api/users/me/calendar-feed", Some(&ada.access_token))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&renewed, None).await.status(),
        StatusCode::NOT_FOUND
    );
    problem(
        app.delete("/api/users/me/calendar-feed", Some(&ada.access_token))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.post("/api/users/me/calendar-feed", None, json!({}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    for garbage in [
        "x.ics",
        "%00.ics",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.ics",
    ] {
        let response = app.get(&format!("/api/calendar/{garbage}"), None).await;
        // A NUL in a path is refused at the edge (400) before any route.
        assert!(
            matches!(
                response.status(),
                StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST
            ),
            "{garbage}: {}",
            response.status()
        );
    }
    // A deleted account's feed goes with it (in the split, once the deletion reached events).
    let gone = app
        .request(
            Method::DELETE,
            "/api/users/me",
            Some(&bob.access_token),
            Some(json!({"current_password": bob.password})),
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&bobs, None).await.status() != StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted account's feed still answers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
