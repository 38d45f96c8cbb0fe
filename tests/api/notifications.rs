//! Notifications through the real path: real HTTP, real databases, the real outbox and broker,
//! and a real SMTP server on loopback (`tests/smtp/recorder.py`, aiosmtpd) that keeps every
//! message it accepted. In every topology (the notifications service is a process of its own
//! in the split).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, json_of, sql_execute, sql_number};

crate::backend_tests!(
    a_person_whose_mail_is_off_is_told_in_the_app_only,
    unknown_emails_get_the_same_reset_answer,
    a_refused_first_request_does_not_leave_tokens_unverifiable,
    first_settings_saved_at_once_all_succeed,
    nothing_is_kept_about_an_account_deleted_as_it_is_told,
);
crate::backend_tests!(
    smtp:
    a_promoted_person_is_told_once_in_the_app_and_by_mail,
    a_cancellation_and_a_move_reach_every_attendee,
    a_forgotten_password_is_reset_once_by_the_mailed_link,
    mail_waits_out_an_smtp_outage_and_arrives_once,
    a_reminder_comes_once_the_day_before,
    refused_mail_is_given_up_and_old_mail_pruned,
    mail_goes_over_tls_trusting_the_configured_ca,
);

/// A real SMTP server of the test's own, keeping what it received.
pub struct SmtpServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    /// Its certificate and key when it speaks TLS, and the CA that signed them.
    tls: Option<TestCa>,
}

/// A certificate authority of the test's own and a certificate it signed for `localhost`.
struct TestCa {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// Made with the openssl command, in `dir`.
    fn new(dir: &std::path::Path) -> Self {
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command makes the test's certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=rsvp test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ][..],
                &key,
            ]
            .concat(),
        );
        openssl(
            &[
                &[
                    "req",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "mail.key",
                    "-out",
                    "mail.csr",
                ][..],
                &key,
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("mail.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "mail.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "mail.ext",
            "-out",
            "mail.pem",
        ]);
        Self {
            ca: dir.join("ca.pem"),
            certificate: dir.join("mail.pem"),
            key: dir.join("mail.key"),
        }
    }
}

/// One received mail, read by a real mail parser.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
    pub list_unsubscribe: Option<String>,
    pub list_unsubscribe_post: Option<String>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let mut server = Self {
            port: crate::helpers::free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls: None,
        };
        server.resume().await;
        server
    }

    /// A server speaking TLS from the first byte (smtps), with a certificate for `localhost`
    /// signed by a CA of the test's own ([`Self::ca_file`]).
    pub async fn start_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            port: crate::helpers::free_port(),
            tls: Some(TestCa::new(dir.path())),
            dir,
            child: None,
        };
        server.resume().await;
        server
    }

    /// `smtp.url` for the processes.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("smtps://localhost:{}", self.port),
            None => format!("smtp://127.0.0.1:{}", self.port),
        }
    }

    /// The CA that signed a TLS server's certificate (`smtp.ca_file`).
    pub fn ca_file(&self) -> String {
        let tls = self.tls.as_ref().expect("a server speaking TLS");
        tls.ca.display().to_string()
    }

    /// Refuses mail to `email` for good from now on (550).
    pub fn refuse(&self, email: &str) {
        use std::io::Write;
        let mut list = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("refuse"))
            .unwrap();
        writeln!(list, "{email}").unwrap();
    }

    /// How many times mail to `email` was refused.
    pub fn refusals(&self, email: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("refused.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.eq_ignore_ascii_case(email))
            .count()
    }

    /// Stops accepting mail (the port refuses connections).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Accepts mail again.
    pub async fn resume(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/recorder.py");
        let mut command = tokio::process::Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path());
        if let Some(tls) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.certificate)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        let child = command
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the SMTP recorder");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the SMTP recorder did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every mail received so far.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let raw = std::fs::read(path).unwrap();
                let message = mail_parser::MessageParser::default()
                    .parse(&raw)
                    .expect("a parsable mail");
                Mail {
                    to: message
                        .to()
                        .and_then(|to| to.first())
                        .and_then(|a| a.address())
                        .unwrap_or_default()
                        .to_owned(),
                    subject: message.subject().unwrap_or_default().to_owned(),
                    text: message.body_text(0).unwrap_or_default().into_owned(),
                    html: message.body_html(0).unwrap_or_default().into_owned(),
                    message_id: message.message_id().unwrap_or_default().to_owned(),
                    list_unsubscribe: message
                        .header_raw("List-Unsubscribe")
                        .map(|v| v.trim().to_owned()),
                    list_unsubscribe_post: message
                        .header_raw("List-Unsubscribe-Post")
                        .map(|v| v.trim().to_owned()),
                }
            })
            .collect()
    }

    /// The mails to `email`, once at least `count` of them arrived (or the wait ran out).
    pub async fn wait_for(&self, email: &str, count: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails: Vec<Mail> = self.mails().into_iter().filter(|m| m.to == email).collect();
            if mails.len() >= count || Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An app whose mail goes to `smtp`, with `settings` on top.
async fn app_with(backend: Backend, smtp: &SmtpServer, settings: &[(&str, &str)]) -> TestApp {
    let url = smtp.url();
    let mut all = vec![
        ("smtp.url", url.as_str()),
        ("server.public_url", "http://rsvp.test"),
    ];
    all.extend_from_slice(settings);
    TestApp::spawn_with(backend, &all).await
}

/// `who`'s notification settings, as the API answers them.
async fn settings_of(app: &TestApp, who: &TestUser) -> Value {
    json_of(
        app.get(
            "/api/users/me/notification-settings",
            Some(&who.access_token),
        )
        .await,
        StatusCode::OK,
    )
    .await
}

/// `who` gives up their seat at `event` (promoting whoever waits first).
async fn give_up_seat(app: &TestApp, event: &str, who: &TestUser) {
    let gone = app
        .delete(
            &format!("/api/events/{event}/registrations/me"),
            Some(&who.access_token),
        )
        .await;
    assert_eq!(
        gone.status(),
        StatusCode::NO_CONTENT,
        "a write is never failed by mail"
    );
}

/// An event of `organiser` with one seat, taken by `first`, `second` on the waitlist.
async fn full_event(
    app: &TestApp,
    organiser: &TestUser,
    first: &TestUser,
    second: &TestUser,
    title: &str,
) -> String {
    let mut body = crate::helpers::event_body(1);
    body["title"] = json!(title);
    body["location"] = json!("Hall 1");
    let event = json_of(
        app.post("/api/events", Some(&organiser.access_token), body)
            .await,
        StatusCode::CREATED,
    )
    .await;
    let id = event["id"].as_str().unwrap().to_owned();
    for (who, status) in [(first, "confirmed"), (second, "waitlisted")] {
        let registration = json_of(
            app.post(
                &format!("/api/events/{id}/registrations"),
                Some(&who.access_token),
                json!({}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        assert_eq!(registration["status"], status);
    }
    id
}

/// The caller's notifications, once at least `count` arrived.
async fn notifications_of(app: &TestApp, who: &TestUser, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = json_of(
            app.get("/api/users/me/notifications", Some(&who.access_token))
                .await,
            StatusCode::OK,
        )
        .await;
        if page["items"].as_array().unwrap().len() >= count || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waitlisted Bea gets Ada's seat: she is told once in the app and once by mail — a mail naming
/// the event, with plain text and HTML, a stable Message-ID and a one-click unsubscribe — even
/// when the domain event is relayed again (its outbox row marked unpublished).
async fn a_promoted_person_is_told_once_in_the_app_and_by_mail(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_with(backend, &smtp, &[]).await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    let event = full_event(&app, &organiser, &ada, &bea, "Rust Meetup").await;
    give_up_seat(&app, &event, &ada).await;

    let mails = smtp.wait_for(&bea.email, 1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.subject, "You got a seat: Rust Meetup");
    assert!(
        mail.text.contains("Rust Meetup") && mail.text.contains("Hall 1"),
        "{}",
        mail.text
    );
    assert!(
        mail.text
            .contains(&format!("http://rsvp.test/#/events/{event}")),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains("<a href=\"http://rsvp.test/#/events/"),
        "{}",
        mail.html
    );
    assert!(!mail.message_id.is_empty());
    let unsubscribe = mail.list_unsubscribe.clone().expect("List-Unsubscribe");
    assert!(
        unsubscribe.starts_with("<http://rsvp.test/api/notifications/unsubscribe?token="),
        "{unsubscribe}"
    );
    assert_eq!(
        mail.list_unsubscribe_post.as_deref(),
        Some("List-Unsubscribe=One-Click")
    );

    let page = notifications_of(&app, &bea, 1).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["kind"], "promotion");
    assert_eq!(items[0]["event_id"], event.as_str());
    assert_eq!(page["unread"], 1);
    let id = items[0]["id"].as_str().unwrap();
    let read = json_of(
        app.patch(
            &format!("/api/users/me/notifications/{id}"),
            Some(&bea.access_token),
            json!({"read": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(read["read_at"].is_string(), "{read}");
    assert_eq!(notifications_of(&app, &bea, 1).await["unread"], 0);
    // Nobody else's to read.
    let foreign = app
        .patch(
            &format!("/api/users/me/notifications/{id}"),
            Some(&ada.access_token),
            json!({"read": true}),
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);

    // The same domain event relayed again (as after a crash before the relay marked it): no
    // second notification, no second mail.
    let outbox = app.events_database_url().to_owned();
    sql_execute(&outbox, "UPDATE events_outbox SET published_at = NULL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sql_number(
        &outbox,
        "SELECT COUNT(*) AS n FROM events_outbox WHERE published_at IS NULL",
    ) > 0
    {
        assert!(
            Instant::now() < deadline,
            "the relay did not send the events again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to_bea = smtp
        .mails()
        .into_iter()
        .filter(|m| m.to == bea.email)
        .count();
    assert_eq!(to_bea, 1, "a second mail");
    assert_eq!(
        notifications_of(&app, &bea, 1).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // One click on the mail's link: no more mail of this kind, and the settings say so.
    let link = unsubscribe.trim_start_matches('<').trim_end_matches('>');
    let path = link.trim_start_matches("http://rsvp.test");
    let clicked = app
        .client
        .post(app.url(path))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), StatusCode::OK);
    let settings = settings_of(&app, &bea).await;
    assert_eq!(settings["email"]["promotion"], false, "{settings}");
    assert_eq!(settings["email"]["cancellation"], true, "{settings}");
    // Unknown links, and what could never be one (a NUL, non-ASCII, far too long), are 404 on
    // both backends (before: a NUL reached PostgreSQL and answered 500).
    for token in ["nope", "%00", "%C3%A9t%C3%A9", &"a".repeat(200)] {
        let unknown = app
            .client
            .post(app.url(&format!("/api/notifications/unsubscribe?token={token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "{token}");
    }
}

/// Cancelling tells every attendee, seated or waiting; moving an event tells them too, saying
/// what changed.
async fn a_cancellation_and_a_move_reach_every_attendee(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_with(backend, &smtp, &[]).await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    let event = full_event(&app, &organiser, &ada, &bea, "Board games").await;
    let moved = app
        .patch(
            &format!("/api/events/{event}"),
            Some(&organiser.access_token),
            json!({"location": "Hall 2", "time_zone": "Asia/Tokyo"}),
        )
        .await;
    let moved = json_of(moved, StatusCode::OK).await;
    // Mail says the local time at the venue, in its zone (Tokyo: nine hours ahead, all year).
    let starts: chrono::DateTime<chrono::Utc> =
        moved["starts_at"].as_str().unwrap().parse().unwrap();
    let local = (starts + chrono::Duration::hours(9))
        .format("%a %-d %b %Y, %H:%M")
        .to_string();
    let cancelled = app
        .delete(
            &format!("/api/events/{event}"),
            Some(&organiser.access_token),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    for who in [&ada, &bea] {
        let mut subjects: Vec<String> = smtp
            .wait_for(&who.email, 2)
            .await
            .into_iter()
            .map(|m| m.subject)
            .collect();
        subjects.sort();
        assert_eq!(
            subjects,
            ["Cancelled: Board games", "Changed: Board games"],
            "{}",
            who.email
        );
        for mail in smtp.wait_for(&who.email, 2).await {
            assert!(
                mail.text.contains(&local) && mail.text.contains("JST (Asia/Tokyo)"),
                "{local} JST missing from {}",
                mail.text
            );
        }
        let kinds: Vec<Value> = notifications_of(&app, who, 2).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].clone())
            .collect();
        assert_eq!(
            kinds,
            [json!("cancellation"), json!("changes")],
            "newest first"
        );
    }
    let to_organiser = smtp
        .mails()
        .into_iter()
        .filter(|m| m.to == organiser.email)
        .count();
    assert_eq!(to_organiser, 0, "the organiser is not an attendee");
}

/// With mail of a kind switched off, the notification still comes in the app, and no mail.
async fn a_person_whose_mail_is_off_is_told_in_the_app_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    let off = json!({"email": {"promotion": false, "cancellation": true, "changes": true, "reminders": true}});
    let saved = app
        .request(
            Method::PUT,
            "/api/users/me/notification-settings",
            Some(&bea.access_token),
            Some(off.clone()),
        )
        .await;
    assert_eq!(json_of(saved, StatusCode::OK).await, off);
    let partial = app
        .request(
            Method::PUT,
            "/api/users/me/notification-settings",
            Some(&bea.access_token),
            Some(json!({"email": {"promotion": false}})),
        )
        .await;
    assert!(partial.status().is_client_error(), "{}", partial.status());
    let event = full_event(&app, &organiser, &ada, &bea, "Quiet evening").await;
    give_up_seat(&app, &event, &ada).await;
    let page = notifications_of(&app, &bea, 1).await;
    assert_eq!(page["items"][0]["kind"], "promotion", "{page}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mail_dir = app.mail_dirs();
    let mails: usize = mail_dir
        .iter()
        .map(|d| std::fs::read_dir(d).map_or(0, |r| r.count()))
        .sum();
    assert_eq!(mails, 0, "mail was sent although switched off");
    let anonymous = app.get("/api/users/me/notifications", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// Everyone with a seat at an event starting within a day is reminded once, however often the
/// scheduler looks (every 200 ms here); the waitlisted are not.
async fn a_reminder_comes_once_the_day_before(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_with(
        backend,
        &smtp,
        &[("notifications.reminder_interval_ms", "200")],
    )
    .await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    let mut body = crate::helpers::event_body(1);
    let starts = chrono::Utc::now() + chrono::Duration::hours(3);
    body["title"] = json!("Soon");
    body["starts_at"] = json!(starts.to_rfc3339());
    body["ends_at"] = json!((starts + chrono::Duration::hours(1)).to_rfc3339());
    let event = json_of(
        app.post("/api/events", Some(&organiser.access_token), body)
            .await,
        StatusCode::CREATED,
    )
    .await;
    let id = event["id"].as_str().unwrap();
    for who in [&ada, &bea] {
        app.post(
            &format!("/api/events/{id}/registrations"),
            Some(&who.access_token),
            json!({}),
        )
        .await;
    }
    let mails = smtp.wait_for(&ada.email, 1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Coming up: Soon");
    tokio::time::sleep(Duration::from_secs(2)).await; // ten more looks
    let all = smtp.mails();
    assert_eq!(
        all.len(),
        1,
        "{:?}",
        all.iter().map(|m| (&m.to, &m.subject)).collect::<Vec<_>>()
    );
    let page = notifications_of(&app, &ada, 1).await;
    assert_eq!(page["items"][0]["kind"], "reminders");
}

/// A reset link by mail sets a new password once: the old password and every session end, the
/// link can not be used twice.
async fn a_forgotten_password_is_reset_once_by_the_mailed_link(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_with(backend, &smtp, &[]).await;
    let ada = app.user().await;
    let asked = app
        .post(
            "/api/auth/password-reset",
            None,
            json!({"email": ada.email.to_uppercase()}),
        )
        .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let mails = smtp.wait_for(&ada.email, 1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Reset your rsvp password");
    assert!(
        mails[0].list_unsubscribe.is_none(),
        "a reset mail can not be switched off"
    );
    let token = mails[0]
        .text
        .split("/#/reset?token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the link in the mail")
        .to_owned();
    let short = app
        .post(
            "/api/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reset = app
        .post(
            "/api/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": "a brand new secret"}),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.login(&ada.email, &ada.password).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ada.email, "a brand new secret").await.status(),
        StatusCode::OK
    );
    let refresh = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": ada.refresh_token}),
        )
        .await;
    assert_eq!(
        refresh.status(),
        StatusCode::UNAUTHORIZED,
        "sessions end with the reset"
    );
    let again = app
        .post(
            "/api/auth/password-reset/confirm",
            None,
            json!({"token": token, "password": "yet another one"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["status"], 400);

    // One token used twice at the same instant: one use wins, the other is refused.
    let asked = app
        .post(
            "/api/auth/password-reset",
            None,
            json!({"email": ada.email}),
        )
        .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let mails = smtp.wait_for(&ada.email, 2).await;
    assert_eq!(mails.len(), 2);
    let token = mails[1]
        .text
        .split("/#/reset?token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the link in the second mail")
        .to_owned();
    let confirm = |password: &'static str| {
        app.post_owned(
            "/api/auth/password-reset/confirm".to_owned(),
            None,
            json!({"token": token, "password": password}),
        )
    };
    let (first, second) = tokio::join!(
        confirm("racing password one"),
        confirm("racing password two")
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400], "one token, two uses");
}

/// The first request a service gets with a token starts fetching the users service's key set
/// (split); when that request is refused meanwhile for another reason (a body that is not JSON:
/// actix drops the token check with it), the fetch still completes. Before, the dropped fetch
/// left no keys and a cool-down: every request of the next two seconds got 503.
async fn a_refused_first_request_does_not_leave_tokens_unverifiable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let refused = app
        .client
        .put(app.url("/api/users/me/notification-settings"))
        .bearer_auth(&ada.access_token)
        .header("content-type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for _ in 0..5 {
        let settings = app
            .get(
                "/api/users/me/notification-settings",
                Some(&ada.access_token),
            )
            .await;
        assert_eq!(settings.status(), StatusCode::OK);
    }
}

/// A person's first settings saved by several requests at once (two tabs, a click on an
/// unsubscribe link): each is 200, never a 500, and one of them is what is stored.
async fn first_settings_saved_at_once_all_succeed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let saves = (0..8).map(|i| {
        let body = json!({"email": {"promotion": i % 2 == 0, "cancellation": true, "changes": true, "reminders": true}});
        app.request(
            Method::PUT,
            "/api/users/me/notification-settings",
            Some(&ada.access_token),
            Some(body),
        )
    });
    let answers = futures_util::future::join_all(saves).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stored = settings_of(&app, &ada).await;
    assert!(stored["email"]["promotion"].is_boolean(), "{stored}");
}

/// Known and unknown emails get the same answer; an unknown one gets no mail.
async fn unknown_emails_get_the_same_reset_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = app.user().await;
    let mut answers = Vec::new();
    for email in [ada.email.as_str(), "nobody@example.com", "not an email"] {
        let answer = app
            .post("/api/auth/password-reset", None, json!({"email": email}))
            .await;
        answers.push((answer.status(), answer.text().await.unwrap()));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    let forged = app
        .post(
            "/api/auth/password-reset/confirm",
            None,
            json!({"token": "forged", "password": "whatever it is"}),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
}

/// The SMTP server is down while ten people get seats: nothing is lost and nothing doubles —
/// each mail arrives exactly once after the server is back.
async fn mail_waits_out_an_smtp_outage_and_arrives_once(backend: Backend) {
    let mut smtp = SmtpServer::start().await;
    let app = app_with(backend, &smtp, &[]).await;
    let organiser = app.user().await;
    let mut waiting = Vec::new();
    let mut seated = Vec::new();
    for i in 0..10 {
        let (first, second) = (app.user().await, app.user().await);
        let event = full_event(&app, &organiser, &first, &second, &format!("Outage {i}")).await;
        seated.push((event, first));
        waiting.push(second);
    }
    smtp.stop().await;
    for (event, first) in &seated {
        give_up_seat(&app, event, first).await;
    }
    // Tried while the server is down (failed attempts are retried with backoff).
    tokio::time::sleep(Duration::from_secs(2)).await;
    smtp.resume().await;
    for who in &waiting {
        let mails = smtp.wait_for(&who.email, 1).await;
        assert_eq!(mails.len(), 1, "{}", who.email);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = smtp.mails();
    assert_eq!(
        all.len(),
        waiting.len(),
        "a mail arrived twice: {:?}",
        all.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    // The queue's metrics say what happened: every mail sent, attempts failed while the server
    // was down, those mails sent after retrying, nothing waiting.
    let metrics = MailMetrics::of(&app).await;
    let value = |name: &str| metrics.value(name);
    assert!(value("rsvp_mail_sent_total") >= waiting.len() as f64);
    assert!(value("rsvp_mail_failed_total") >= 1.0);
    assert!(value("rsvp_mail_retried_total") >= 1.0);
    assert_eq!(value("rsvp_mail_queue_depth"), 0.0);
}

/// The mail queue's metrics, from the process that hosts the notifications module.
struct MailMetrics {
    text: String,
}

impl MailMetrics {
    async fn of(app: &TestApp) -> Self {
        let url = match crate::helpers::topology() {
            crate::helpers::Topology::Monolith => app.url("/metrics"),
            #[cfg(feature = "split")]
            crate::helpers::Topology::Mixed("notifications") => app.url("/metrics"),
            #[cfg(feature = "split")]
            _ => format!("{}/metrics", app.address_of("notifications")),
            #[cfg(not(feature = "split"))]
            _ => unreachable!(),
        };
        let text = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Self { text }
    }

    fn value(&self, name: &str) -> f64 {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from the metrics"))
    }
}

/// Polls `sql` (a count) on `url` until it is `expected`, for up to 20 s.
async fn wait_for_count(url: &str, sql: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = sql_number(url, sql);
        if n == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A mail the server refuses for good (550) is given up after that one attempt — not retried
/// without end — and counted; sent and given-up mail, and the record of handled domain events,
/// are pruned once older than `notifications.keep_days`, while the in-app notifications stay.
async fn refused_mail_is_given_up_and_old_mail_pruned(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_with(
        backend,
        &smtp,
        &[("notifications.prune_interval_ms", "200")],
    )
    .await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    smtp.refuse(&bea.email);
    let event = full_event(&app, &organiser, &ada, &bea, "Refused").await;
    give_up_seat(&app, &event, &ada).await;
    let db = app.database_url_of("notifications").to_owned();
    let given_up = "SELECT COUNT(*) AS n FROM mail_queue WHERE given_up_at IS NOT NULL \
                    AND sent_at IS NULL AND attempts = 1 AND last_error LIKE '%550%'";
    wait_for_count(&db, given_up, 1).await;
    // Past several polls and the first backoffs: not tried again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.refusals(&bea.email), 1);
    let metrics = MailMetrics::of(&app).await;
    assert_eq!(metrics.value("rsvp_mail_given_up_total"), 1.0);
    assert_eq!(metrics.value("rsvp_mail_queue_depth"), 0.0);

    // A mail that goes through: Ada's password reset.
    let asked = app
        .post(
            "/api/auth/password-reset",
            None,
            json!({"email": ada.email}),
        )
        .await;
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    assert_eq!(smtp.wait_for(&ada.email, 1).await.len(), 1);
    let sent = "SELECT COUNT(*) AS n FROM mail_queue WHERE sent_at IS NOT NULL";
    wait_for_count(&db, sent, 1).await;
    assert!(sql_number(&db, "SELECT COUNT(*) AS n FROM notifications_inbox") > 0);
    // Recent: kept through several prunes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sql_number(&db, "SELECT COUNT(*) AS n FROM mail_queue"), 2);
    // Older than the 30 days kept: pruned.
    let long_ago = "'2020-01-01 00:00:00'";
    sql_execute(
        &db,
        &format!("UPDATE mail_queue SET sent_at = {long_ago} WHERE sent_at IS NOT NULL"),
    );
    sql_execute(
        &db,
        &format!("UPDATE mail_queue SET given_up_at = {long_ago} WHERE given_up_at IS NOT NULL"),
    );
    sql_execute(
        &db,
        &format!("UPDATE notifications_inbox SET handled_at = {long_ago}"),
    );
    wait_for_count(&db, "SELECT COUNT(*) AS n FROM mail_queue", 0).await;
    wait_for_count(&db, "SELECT COUNT(*) AS n FROM notifications_inbox", 0).await;
    assert_eq!(
        notifications_of(&app, &bea, 1).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// With `smtps://` and `smtp.ca_file`, mail goes over TLS to a server whose certificate a CA of
/// the organisation's own signed (here the test's).
async fn mail_goes_over_tls_trusting_the_configured_ca(backend: Backend) {
    let smtp = SmtpServer::start_tls().await;
    let ca = smtp.ca_file();
    let app = app_with(backend, &smtp, &[("smtp.ca_file", ca.as_str())]).await;
    let (organiser, ada, bea) = (app.user().await, app.user().await, app.user().await);
    let event = full_event(&app, &organiser, &ada, &bea, "Encrypted").await;
    give_up_seat(&app, &event, &ada).await;
    let mails = smtp.wait_for(&bea.email, 1).await;
    assert_eq!(mails.len(), 1, "no mail arrived over TLS");
    assert!(
        mails[0].subject.contains("Encrypted"),
        "{}",
        mails[0].subject
    );
}

/// People promoted at the instant they delete their account, many times: once both settled,
/// nothing about them is left in the notifications module — no notification, no mail, no
/// settings — whichever came first, the deletion or the promotion's notification.
async fn nothing_is_kept_about_an_account_deleted_as_it_is_told(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let organiser = app.user().await;
    let trials = 12;
    let mut deleted = Vec::new();
    let mut addresses = Vec::new();
    for trial in 0..trials {
        let (ada, bea) = (app.user().await, app.user().await);
        let event = full_event(&app, &organiser, &ada, &bea, &format!("Race {trial}")).await;
        // Bea's settings exist, so forgetting has something to remove.
        let saved = app
            .request(
                Method::PUT,
                "/api/users/me/notification-settings",
                Some(&bea.access_token),
                Some(json!({"email": {"promotion": true, "cancellation": true, "changes": false, "reminders": true}})),
            )
            .await;
        assert_eq!(saved.status(), StatusCode::OK);
        let seat = format!("/api/events/{event}/registrations/me");
        let withdraw = app.delete(&seat, Some(&ada.access_token));
        let delete = async {
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..4000))).await;
            app.request(
                Method::DELETE,
                "/api/users/me",
                Some(&bea.access_token),
                Some(json!({"current_password": bea.password})),
            )
            .await
        };
        let (withdrawn, gone) = tokio::join!(withdraw, delete);
        assert_eq!(withdrawn.status(), StatusCode::NO_CONTENT);
        assert_eq!(gone.status(), StatusCode::NO_CONTENT);
        deleted.push(format!("'{}'", bea.id));
        addresses.push(bea.email.clone());
    }
    let db = app.database_url_of("notifications").to_owned();
    let ids = deleted.join(", ");
    wait_for_count(
        &db,
        &format!(
            "SELECT COUNT(*) AS n FROM notifications_forgotten_users WHERE user_id IN ({ids})"
        ),
        trials,
    )
    .await;
    // Every promotion handled too (its domain event was relayed and consumed).
    let events_db = app.events_database_url().to_owned();
    wait_for_count(
        &events_db,
        "SELECT COUNT(*) AS n FROM events_outbox WHERE published_at IS NULL",
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for table in [
        "notifications",
        "mail_queue",
        "notification_settings",
        "unsubscribe_tokens",
    ] {
        let left = sql_number(
            &db,
            &format!("SELECT COUNT(*) AS n FROM {table} WHERE user_id IN ({ids})"),
        );
        assert_eq!(left, 0, "{left} rows of deleted accounts in {table}");
    }
    // Nor their mail written to files (no SMTP server here: the one-binary default).
    for dir in app.mail_dirs() {
        for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(file.path()).unwrap_or_default();
            for address in &addresses {
                assert!(
                    !text.contains(address.as_str()),
                    "{} still holds {address}",
                    file.path().display()
                );
            }
        }
    }
}
