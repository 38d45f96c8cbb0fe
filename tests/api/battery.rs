//! The concurrency battery: rounds of randomly interleaved writes — sign-ups, withdrawals,
//! capacity changes, cancellations, account deletions, refreshes, logouts and password changes —
//! fired at once, each at its own random moment, against every topology (the split with two
//! instances of the events module behind the gateway). After each round, once the deletion
//! cascades ran, every invariant of the contract is checked through the API and with SQL on each
//! database: capacity and counts, arrival order, no waiting while a seat is free, nothing left
//! of a deleted account, no refresh token alive that a revocation answered before, no 5xx.
//!
//! `RSVP_BATTERY_SEED` replays a run (the seed is printed); `RSVP_BATTERY_ROUNDS` runs longer.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, Topology, json_of, sql_number, topology};

crate::backend_tests!(random_interleavings_keep_every_invariant);

/// One person of the battery, with every refresh token handed to them.
struct Person {
    user: TestUser,
    deleted: bool,
    /// Refresh tokens: the token, its session (login), when the request that got it was sent.
    tokens: Vec<(String, usize, Instant)>,
    /// Revocations answered: everything of the session (`None`: every session) whose request was
    /// sent before the instant must be dead.
    revoked: Vec<(Option<usize>, Instant)>,
}

/// One write of a round.
#[derive(Debug, Clone, Copy)]
enum Op {
    SignUp { person: usize, event: usize },
    Withdraw { person: usize, event: usize },
    Capacity { event: usize, capacity: i64 },
    Cancel { event: usize },
    Delete { person: usize },
    Refresh { person: usize },
    Logout { person: usize },
    ChangePassword { person: usize },
}

/// What an op returned, for the bookkeeping after the round.
struct Outcome {
    op: Op,
    status: StatusCode,
    sent: Instant,
    answered: Instant,
    body: Value,
}

fn random_op(rng: &mut fastrand::Rng, people: usize, events: usize) -> Op {
    let person = rng.usize(..people);
    let event = rng.usize(..events);
    match rng.u32(..100) {
        0..45 => Op::SignUp { person, event },
        45..62 => Op::Withdraw { person, event },
        62..70 => Op::Capacity {
            event,
            capacity: rng.i64(1..6),
        },
        70..72 => Op::Cancel { event },
        72..78 => Op::Delete { person },
        78..88 => Op::Refresh { person },
        88..93 => Op::Logout { person },
        _ => Op::ChangePassword { person },
    }
}

async fn random_interleavings_keep_every_invariant(backend: Backend) {
    let seed = std::env::var("RSVP_BATTERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let rounds: usize = std::env::var("RSVP_BATTERY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut rng = fastrand::Rng::with_seed(seed);
    eprintln!(
        "battery: {backend:?}, {:?}, seed {seed}, {rounds} rounds",
        topology()
    );
    let mut app = TestApp::spawn(backend).await;
    if topology() == Topology::Split {
        two_events_instances(&mut app).await;
    }
    let organiser = app.user_named("Organiser").await;
    let mut totals = HashMap::<&str, usize>::new();
    for round in 0..rounds {
        let events: Vec<String> =
            join_all((0..4).map(|_| app.event_id(&organiser, 2 + rng.i64(0..3)))).await;
        let mut people: Vec<Person> = join_all((0..12).map(|_| app.user()))
            .await
            .into_iter()
            .map(|user| Person {
                tokens: vec![(user.refresh_token.clone(), 0, Instant::now())],
                user,
                deleted: false,
                revoked: Vec::new(),
            })
            .collect();
        let ops: Vec<Op> = (0..90)
            .map(|_| random_op(&mut rng, people.len(), events.len()))
            .collect();
        let delays: Vec<Duration> = ops
            .iter()
            .map(|_| Duration::from_micros(rng.u64(..30_000)))
            .collect();
        let outcomes = join_all(
            ops.iter()
                .zip(delays)
                .map(|(op, delay)| run(&app, &organiser, &people, &events, *op, delay)),
        )
        .await;
        for outcome in &outcomes {
            assert!(
                outcome.status.as_u16() < 500,
                "seed {seed}, round {round}: {:?} answered {}: {}",
                outcome.op,
                outcome.status,
                outcome.body
            );
            *totals.entry(kind(outcome.op)).or_default() += 1;
            record(&mut people, outcome);
        }
        let deleted: HashSet<String> = people
            .iter()
            .filter(|p| p.deleted)
            .map(|p| p.user.id.clone())
            .collect();
        wait_for_cascades(&app, &organiser, &events, &deleted, seed).await;
        check_events(&app, &organiser, &events, seed).await;
        check_databases(&app, &deleted, seed);
        check_sessions(&app, &people, seed).await;
    }
    eprintln!("battery: {backend:?}, seed {seed}: every invariant held; ops run: {totals:?}");
}

fn kind(op: Op) -> &'static str {
    match op {
        Op::SignUp { .. } => "sign-up",
        Op::Withdraw { .. } => "withdrawal",
        Op::Capacity { .. } => "capacity change",
        Op::Cancel { .. } => "cancellation",
        Op::Delete { .. } => "deletion",
        Op::Refresh { .. } => "refresh",
        Op::Logout { .. } => "logout",
        Op::ChangePassword { .. } => "password change",
    }
}

/// A second events instance, and the gateway restarted to balance over both.
#[cfg(feature = "split")]
async fn two_events_instances(app: &mut TestApp) {
    app.processes().balance_two_events_instances().await;
}

#[cfg(not(feature = "split"))]
async fn two_events_instances(_: &mut TestApp) {}

/// Sends `op` after `delay`, with the credentials the person had when the round began (a
/// password changed in the same round makes later checks of the old one fail: a 403, fine).
async fn run(
    app: &TestApp,
    organiser: &TestUser,
    people: &[Person],
    events: &[String],
    op: Op,
    delay: Duration,
) -> Outcome {
    tokio::time::sleep(delay).await;
    let sent = Instant::now();
    let person = |i: usize| &people[i].user;
    let latest_token = |i: usize| people[i].tokens.last().map(|t| t.0.clone()).unwrap();
    let response = match op {
        Op::SignUp { person: p, event } => {
            let path = format!("/api/events/{}/registrations", events[event]);
            app.post(&path, Some(&person(p).access_token), json!({}))
                .await
        }
        Op::Withdraw { person: p, event } => {
            let path = format!("/api/events/{}/registrations/me", events[event]);
            app.delete(&path, Some(&person(p).access_token)).await
        }
        Op::Capacity { event, capacity } => {
            let path = format!("/api/events/{}", events[event]);
            app.patch(
                &path,
                Some(&organiser.access_token),
                json!({"capacity": capacity}),
            )
            .await
        }
        Op::Cancel { event } => {
            let path = format!("/api/events/{}", events[event]);
            app.delete(&path, Some(&organiser.access_token)).await
        }
        Op::Delete { person: p } => {
            app.request(
                Method::DELETE,
                "/api/users/me",
                Some(&person(p).access_token),
                Some(json!({"current_password": person(p).password})),
            )
            .await
        }
        Op::Refresh { person: p } => {
            app.post(
                "/api/auth/refresh",
                None,
                json!({"refresh_token": latest_token(p)}),
            )
            .await
        }
        Op::Logout { person: p } => {
            app.post(
                "/api/auth/logout",
                None,
                json!({"refresh_token": latest_token(p)}),
            )
            .await
        }
        Op::ChangePassword { person: p } => {
            app.patch(
                "/api/users/me",
                Some(&person(p).access_token),
                json!({"password": format!("{} again", person(p).password),
                       "current_password": person(p).password}),
            )
            .await
        }
    };
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Outcome {
        op,
        status,
        sent,
        answered: Instant::now(),
        body,
    }
}

/// What the client learnt from `outcome`: new tokens, revocations, deletions.
fn record(people: &mut [Person], outcome: &Outcome) {
    let ok = outcome.status.is_success();
    match outcome.op {
        Op::Delete { person } if ok => {
            people[person].deleted = true;
            people[person].revoked.push((None, outcome.answered));
        }
        Op::ChangePassword { person } if ok => {
            people[person].revoked.push((None, outcome.answered));
        }
        Op::Logout { person } if ok => {
            // The token it logged out was the latest at the round's start: its session ends.
            let session = people[person].tokens.last().map(|t| t.1);
            if let Some(session) = session {
                people[person]
                    .revoked
                    .push((Some(session), outcome.answered));
            }
        }
        Op::Refresh { person } if ok => {
            let session = people[person].tokens.last().map_or(0, |t| t.1);
            let token = outcome.body["refresh_token"].as_str().unwrap().to_owned();
            people[person].tokens.push((token, session, outcome.sent));
        }
        _ => {}
    }
}

/// Until every deletion's cascade ran (they run after the `204`, from the outbox).
async fn wait_for_cascades(
    app: &TestApp,
    organiser: &TestUser,
    events: &[String],
    deleted: &HashSet<String>,
    seed: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = app.registrations_of(organiser, events, deleted).await;
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {left} registrations of deleted accounts stay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each event's counts against its attendee list, arrival order, no waiting beside a free seat.
async fn check_events(app: &TestApp, organiser: &TestUser, events: &[String], seed: u64) {
    for id in events {
        let event = json_of(
            app.get(&format!("/api/events/{id}"), None).await,
            StatusCode::OK,
        )
        .await;
        let attendees = app
            .walk(
                &format!("/api/events/{id}/registrations?limit=100"),
                Some(&organiser.access_token),
            )
            .await;
        let of = |status: &str| -> Vec<&str> {
            attendees
                .iter()
                .filter(|a| a["status"] == status)
                .map(|a| a["created_at"].as_str().unwrap())
                .collect()
        };
        let (confirmed, waitlisted) = (of("confirmed"), of("waitlisted"));
        let (capacity, seats, waiting) = (
            event["capacity"].as_i64().unwrap(),
            event["seats_taken"].as_i64().unwrap(),
            event["waitlist_length"].as_i64().unwrap(),
        );
        let context = format!("seed {seed}, event {id}: {event}");
        assert!(seats <= capacity, "over capacity; {context}");
        assert_eq!(seats as usize, confirmed.len(), "seats_taken; {context}");
        assert_eq!(
            waiting as usize,
            waitlisted.len(),
            "waitlist_length; {context}"
        );
        if event["status"] == "scheduled" && waiting > 0 {
            assert_eq!(seats, capacity, "people wait beside a free seat; {context}");
        }
        let newest_confirmed = confirmed.iter().map(|t| parse(t)).max();
        let oldest_waiting = waitlisted.iter().map(|t| parse(t)).min();
        if let (Some(confirmed), Some(waiting)) = (newest_confirmed, oldest_waiting) {
            assert!(
                waiting >= confirmed,
                "a waitlisted registration is older than a confirmed one; {context}"
            );
        }
    }
}

fn parse(time: &str) -> chrono::DateTime<chrono::Utc> {
    time.parse().unwrap()
}

/// The same invariants on the databases themselves, over every event there is.
fn check_databases(app: &TestApp, deleted: &HashSet<String>, seed: u64) {
    let events_db = app.events_database_url();
    let counts_off = sql_number(
        events_db,
        "SELECT count(*) AS n FROM events e WHERE e.seats_taken > e.capacity \
         OR e.seats_taken <> (SELECT count(*) FROM registrations r \
             WHERE r.event_id = e.id AND r.status = 'confirmed') \
         OR e.waitlist_length <> (SELECT count(*) FROM registrations r \
             WHERE r.event_id = e.id AND r.status = 'waitlisted')",
    );
    assert_eq!(counts_off, 0, "seed {seed}: events whose counts are off");
    let waiting_beside_a_seat = sql_number(
        events_db,
        "SELECT count(*) AS n FROM events WHERE status = 'scheduled' \
         AND waitlist_length > 0 AND seats_taken < capacity",
    );
    assert_eq!(
        waiting_beside_a_seat, 0,
        "seed {seed}: waiting beside a free seat"
    );
    let out_of_order = sql_number(
        events_db,
        "SELECT count(*) AS n FROM registrations c JOIN registrations w \
         ON w.event_id = c.event_id AND c.status = 'confirmed' AND w.status = 'waitlisted' \
         WHERE w.created_at < c.created_at",
    );
    assert_eq!(out_of_order, 0, "seed {seed}: arrival order broken");
    if deleted.is_empty() {
        return;
    }
    let ids = deleted
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let left = sql_number(
        events_db,
        &format!(
            "SELECT (SELECT count(*) FROM registrations WHERE user_id IN ({ids})) \
             + (SELECT count(*) FROM events WHERE status = 'scheduled' \
                AND organizer_id IN ({ids})) AS n"
        ),
    );
    assert_eq!(
        left, 0,
        "seed {seed}: rows of deleted accounts in the events database"
    );
    let users_left = sql_number(
        app.users_database_url(),
        &format!(
            "SELECT (SELECT count(*) FROM users WHERE id IN ({ids})) \
             + (SELECT count(*) FROM refresh_tokens WHERE user_id IN ({ids})) AS n"
        ),
    );
    assert_eq!(
        users_left, 0,
        "seed {seed}: rows of deleted accounts in the users database"
    );
}

/// Every refresh token a revocation answered before it was asked for is dead.
async fn check_sessions(app: &TestApp, people: &[Person], seed: u64) {
    for person in people {
        for (token, session, sent) in &person.tokens {
            let revoked = person
                .revoked
                .iter()
                .any(|(which, at)| sent < at && which.is_none_or(|s| s == *session));
            if !revoked {
                continue;
            }
            let status = app
                .post("/api/auth/refresh", None, json!({"refresh_token": token}))
                .await
                .status();
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "seed {seed}: a refresh token outlived its revocation"
            );
        }
    }
}
