//! How many statements each write sends to the database, counted by the database itself on
//! PostgreSQL (`pg_stat_statements`, which CI loads) and, on SQLite, by diesel's instrumentation
//! of the embedded engine's connection. On a database a network hop away every statement is a
//! round trip inside the event's lock, so one more on the hot path fails here.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_trait::async_trait;
use chrono::{Duration, Utc};
use diesel::{
    connection::{Instrumentation, InstrumentationEvent},
    prelude::*,
    sql_types::{BigInt, Text},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    MIGRATIONS, RegistrationStatus, SEAT_OBTAINED, SeatObtained,
    list_plans::{postgres_db, postgres_db_with, settings},
    service::EventsService,
};
use crate::{
    modules::users::{Contact, PublicProfile, UsersApi, UsersApiError},
    platform::{
        auth::{AuthUser, DeletedAccounts, Role},
        changes::Changes,
        db::{DatabaseUrl, Db, DbConnection},
        ids::UserId,
        read_cache::{CacheMetrics, CacheSettings},
    },
};

/// Everyone is known by a name of their id.
struct Names;

#[async_trait]
impl UsersApi for Names {
    async fn public_profiles(&self, ids: &[Uuid]) -> Result<Vec<PublicProfile>, UsersApiError> {
        Ok(ids
            .iter()
            .map(|&id| PublicProfile {
                id,
                name: id.to_string(),
            })
            .collect())
    }

    async fn contacts(&self, _: &[Uuid]) -> Result<Vec<Contact>, UsersApiError> {
        Ok(Vec::new())
    }
}

/// What counts the statements that reached the database.
enum Counter {
    /// `pg_stat_statements`, read over a connection to the server's `postgres` database (so
    /// the reading is not counted) for the test's database.
    Postgres {
        admin: PgConnection,
        database: String,
    },
    /// Every statement the (single) pooled SQLite connection ran.
    Sqlite(Arc<AtomicUsize>),
}

struct Counting(Arc<AtomicUsize>);

impl Instrumentation for Counting {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Counter {
    /// `None` when the server did not load the extension (said; a failure when PostgreSQL is
    /// required).
    fn postgres(database: &str) -> Option<Self> {
        let admin_url = std::env::var("RSVP_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let mut admin = PgConnection::establish(&format!("{admin_url}/postgres")).unwrap();
        // Tests may create it at once: one wins, the others fail and then find it.
        let _ = diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut admin);
        if let Err(e) =
            diesel::sql_query("SELECT 1 FROM pg_stat_statements LIMIT 1").execute(&mut admin)
        {
            assert!(
                std::env::var_os("RSVP_REQUIRE_POSTGRES").is_none(),
                "pg_stat_statements is required with RSVP_REQUIRE_POSTGRES ({e}); .ci/run loads it"
            );
            eprintln!("SKIPPED: statement counts on PostgreSQL (pg_stat_statements: {e})");
            return None;
        }
        Some(Self::Postgres {
            admin,
            database: database.to_owned(),
        })
    }

    async fn sqlite(db: &Db) -> Self {
        let count = Arc::new(AtomicUsize::new(0));
        let counting = Counting(count.clone());
        db.run(move |conn| {
            conn.set_instrumentation(counting);
            Ok::<_, crate::platform::db::DbError>(())
        })
        .await
        .unwrap();
        Self::Sqlite(count)
    }

    fn read(&mut self) -> i64 {
        #[derive(QueryableByName)]
        struct Calls {
            #[diesel(sql_type = BigInt)]
            calls: i64,
        }
        match self {
            Self::Postgres { admin, database } => {
                diesel::sql_query(
                    "SELECT COALESCE(SUM(calls), 0)::bigint AS calls FROM pg_stat_statements \
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
                )
                .bind::<Text, _>(&*database)
                .get_result::<Calls>(admin)
                .unwrap()
                .calls
            }
            Self::Sqlite(count) => count.load(Ordering::SeqCst) as i64,
        }
    }
}

/// Runs every write once, with what each needs in place first, and returns the statements each
/// took. Checks the outcome of each too: a count of a write that did something else is no count.
async fn count_writes(db: Db, counter: &mut Counter) -> Vec<(&'static str, i64)> {
    let service = service(&db);
    let (organizer, alice, bob, carol) = (member(), member(), member(), member());
    let event = publish(&service, organizer, "Counted", 1).await;
    // Each person's first write also takes the account's guard row.
    for who in [alice, bob, carol] {
        let other = publish(&service, who, "Warm-up", 1).await;
        service.cancel(who, other.id.into()).await.unwrap();
    }
    measure_writes(
        &db,
        &service,
        counter,
        [organizer, alice, bob, carol],
        &event,
    )
    .await
}

/// Someone new.
fn member() -> AuthUser {
    AuthUser {
        id: UserId::from(Uuid::now_v7()),
        role: Role::Member,
    }
}

/// An event of `capacity` seats three days ahead, published by `organizer`.
async fn publish(
    service: &EventsService,
    organizer: AuthUser,
    title: &str,
    capacity: u32,
) -> super::Event {
    let starts = Utc::now() + Duration::days(3);
    let input = serde_json::from_value(json!({
        "title": title, "capacity": capacity,
        "starts_at": starts, "ends_at": starts + Duration::hours(2),
    }))
    .unwrap();
    service.create(organizer, input).await.unwrap()
}

/// The module's service on `db`, without its background work (so only the writes run).
fn service(db: &Db) -> EventsService {
    EventsService::new(
        db.clone(),
        Arc::new(Names),
        Arc::new(DeletedAccounts::new(std::time::Duration::from_secs(900))),
        Arc::new(Changes::default()),
        &CacheSettings {
            enabled: false,
            max_bytes: 1 << 20,
            ttl_ms: 1000,
        },
        &CacheMetrics::default(),
        "http://127.0.0.1".into(),
    )
}

async fn measure_writes(
    db: &Db,
    service: &EventsService,
    counter: &mut Counter,
    [organizer, alice, bob, carol]: [AuthUser; 4],
    event: &super::Event,
) -> Vec<(&'static str, i64)> {
    let id = event.id.into();
    let mut counts = Vec::new();
    let mut measure = |name: &'static str, before: i64, counter: &mut Counter| {
        counts.push((name, counter.read() - before));
    };
    let before = counter.read();
    let seat = service.register(alice, id).await.unwrap();
    assert_eq!(seat.status, RegistrationStatus::Confirmed);
    measure("sign-up, a seat", before, counter);

    let before = counter.read();
    let waiting = service.register(bob, id).await.unwrap();
    assert_eq!(
        (waiting.status, waiting.position),
        (RegistrationStatus::Waitlisted, Some(1))
    );
    measure("sign-up, the waitlist", before, counter);

    let before = counter.read();
    service.unregister(alice, id).await.unwrap();
    measure(
        "withdrawal from a seat, the first waiting promoted",
        before,
        counter,
    );

    service.register(carol, id).await.unwrap();
    let before = counter.read();
    service.unregister(carol, id).await.unwrap();
    measure("withdrawal from the waitlist", before, counter);

    service.register(alice, id).await.unwrap();
    let before = counter.read();
    let patch = serde_json::from_value(json!({"capacity": 2})).unwrap();
    service.update(organizer, id, patch).await.unwrap();
    measure(
        "capacity raised, the first waiting promoted",
        before,
        counter,
    );

    // Last: a refusal may mark the connection for a liveness check (`SELECT 1`) before its
    // next use.
    let before = counter.read();
    let again = service.register(bob, id).await;
    assert!(
        matches!(again, Err(super::EventsError::AlreadyRegistered)),
        "{again:?}"
    );
    measure("sign-up refused (registered already)", before, counter);

    let before = counter.read();
    service.cancel(organizer, id).await.unwrap();
    measure("cancellation (two attendees told)", before, counter);

    // The promotions were recorded for the relay as the consumers read them: Bob by the
    // withdrawal, Alice by the capacity change.
    let recorded = db
        .run(|conn| {
            #[derive(QueryableByName)]
            struct Payload {
                #[diesel(sql_type = Text)]
                payload: String,
            }
            let sql = |p: &str| {
                format!("SELECT payload FROM events_outbox WHERE topic = {p} ORDER BY created_at")
            };
            let rows: Vec<Payload> = match conn {
                DbConnection::Postgres(pg) => diesel::sql_query(sql("$1"))
                    .bind::<Text, _>(SEAT_OBTAINED)
                    .load(pg),
                DbConnection::Sqlite(lite) => diesel::sql_query(sql("?1"))
                    .bind::<Text, _>(SEAT_OBTAINED)
                    .load(lite),
            }
            .map_err(crate::platform::db::DbError::from)?;
            Ok::<_, crate::platform::db::DbError>(
                rows.into_iter().map(|r| r.payload).collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap();
    let promoted: Vec<SeatObtained> = recorded
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        promoted.iter().map(|p| p.user_id).collect::<Vec<_>>(),
        vec![bob.id.as_uuid(), alice.id.as_uuid()]
    );
    for seat in &promoted {
        assert_eq!(seat.event.id, event.id);
        assert_eq!(seat.event.title, "Counted");
        assert_eq!(seat.event.starts_at, event.starts_at);
        assert_eq!(seat.event.ends_at, event.ends_at);
        assert_eq!(seat.event.time_zone, "UTC");
    }
    counts
}

fn table(counts: &[(&str, i64)]) -> String {
    counts
        .iter()
        .map(|(name, n)| format!("{n:>3}  {name}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn postgres_writes_take_one_statement_on_their_hot_paths() {
    let Some((dropped, db)) = postgres_db("statements") else {
        return;
    };
    let Some(mut counter) = Counter::postgres(&dropped.name) else {
        return;
    };
    let counts = count_writes(db, &mut counter).await;
    eprintln!("statements per write on PostgreSQL:\n{}", table(&counts));
    let expected = [
        ("sign-up, a seat", 1),
        ("sign-up, the waitlist", 1),
        // One that refuses, and three that read why (the account, the event, the registration).
        ("sign-up refused (registered already)", 4),
        ("withdrawal from a seat, the first waiting promoted", 1),
        ("withdrawal from the waitlist", 1),
    ];
    for (name, most) in expected {
        let (_, n) = counts.iter().find(|(c, _)| *c == name).unwrap();
        assert!(
            *n <= most,
            "{name}: {n} statements, at most {most} expected\n{}",
            table(&counts)
        );
    }
}

#[tokio::test]
async fn sqlite_writes_take_a_short_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("statements.db"));
    let db = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    let mut counter = Counter::sqlite(&db).await;
    let counts = count_writes(db, &mut counter).await;
    eprintln!("statements per write on SQLite:\n{}", table(&counts));
    // BEGIN IMMEDIATE, the account's guard, the event, the registration, the counts, COMMIT.
    let expected = [("sign-up, a seat", 6), ("sign-up, the waitlist", 6)];
    for (name, most) in expected {
        let (_, n) = counts.iter().find(|(c, _)| *c == name).unwrap();
        assert!(
            *n <= most,
            "{name}: {n} statements, at most {most} expected\n{}",
            table(&counts)
        );
    }
}

/// Rounds of [`race_seats`]: the first one-statement sign-up failed within 5 to 59.
const ROUNDS: u64 = 150;

/// Sign-ups, withdrawals and capacity changes of one event racing, many rounds: every answer is
/// a success or the refusal its race allows (never a database error: the first one-statement
/// sign-up broke the capacity check when a capacity change committed while it waited), and
/// afterwards the event's counts are its registrations', within capacity, with nobody waiting
/// beside a free seat.
async fn race_seats(db: Db) {
    use super::EventsError as E;
    let service = Arc::new(service(&db));
    let organizer = member();
    let event = publish(&service, organizer, "Raced", 2).await;
    let id: super::domain::EventId = event.id.into();
    let mut registered: Vec<AuthUser> = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..ROUNDS {
        // Newcomers each round (every sign-up is an admission), as many of the earlier ones
        // leaving, and the capacity moved up and down, all at once.
        let newcomers: Vec<AuthUser> = (0..4).map(|_| member()).collect();
        // As many leave as come, so the event stays small, seats free up and fill again.
        let leaving: Vec<AuthUser> = registered
            .iter()
            .rev()
            .step_by(2)
            .take(4)
            .copied()
            .collect();
        let capacities = [1 + round % 5, 6 - round % 5];
        let barrier = Arc::new(tokio::sync::Barrier::new(
            newcomers.len() + leaving.len() + capacities.len(),
        ));
        let mut tasks = Vec::new();
        for (who, sign_up) in newcomers
            .iter()
            .map(|w| (*w, true))
            .chain(leaving.iter().map(|w| (*w, false)))
        {
            let (service, barrier) = (service.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let result = if sign_up {
                    service.register(who, id).await.map(drop)
                } else {
                    service.unregister(who, id).await
                };
                match result {
                    Ok(()) => "ok",
                    Err(E::RegistrationNotFound) => "not registered",
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }));
        }
        for capacity in capacities {
            let (service, barrier) = (service.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let patch = serde_json::from_value(json!({ "capacity": capacity })).unwrap();
                match service.update(organizer, id, patch).await {
                    Ok(_) => "capacity changed",
                    Err(E::CapacityBelowSeatsTaken { .. }) => "capacity refused",
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }));
        }
        for task in tasks {
            *outcomes.entry(task.await.unwrap().to_owned()).or_default() += 1;
        }
        registered.retain(|who| !leaving.iter().any(|l| l.id == who.id));
        registered.extend(newcomers);
    }
    eprintln!("{} outcomes: {outcomes:?}", db.backend());
    let (seats, waiting, capacity) = db
        .run(move |conn| {
            let event = super::store::find_event(conn, id)?.expect("the event");
            let stored = super::store::registered_users(conn, id)?.len();
            use super::schema::registrations as r;
            let confirmed: i64 = r::table
                .filter(r::event_id.eq(id.to_string()))
                .filter(r::status.eq(RegistrationStatus::Confirmed.as_str()))
                .count()
                .get_result(conn)
                .map_err(crate::platform::db::DbError::from)?;
            assert_eq!(
                stored as i64 - confirmed,
                i64::from(event.waitlist_length())
            );
            assert_eq!(confirmed, i64::from(event.seats_taken()));
            Ok::<_, E>((
                event.seats_taken(),
                event.waitlist_length(),
                event.draft.capacity,
            ))
        })
        .await
        .unwrap();
    assert!(seats <= capacity, "{seats} seats of {capacity}");
    assert!(
        waiting == 0 || seats == capacity,
        "{waiting} waiting beside {} free seats",
        capacity - seats
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_seats_stay_counted_under_racing_writes() {
    let Some((_dropped, db)) = postgres_db_with("races", 8) else {
        return;
    };
    race_seats(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_seats_stay_counted_under_racing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(DatabaseUrl::Sqlite(dir.path().join("races.db")));
    settings.max_connections = 8;
    race_seats(Db::connect(&settings, &[&MIGRATIONS]).unwrap()).await;
}

/// A version before the guard rows recorded a deletion only as a tombstone (its cascade, during
/// a rolling upgrade): a sign-up of this version, whose process never heard of the deletion,
/// is refused all the same.
async fn tombstone_refuses(db: Db) {
    let service = service(&db);
    let (organizer, gone) = (member(), member());
    let event = publish(&service, organizer, "Upgraded", 5).await;
    db.run(move |conn| {
        super::store::record_deleted_user(conn, gone.id, Utc::now())
            .map_err(crate::platform::db::DbError::from)
    })
    .await
    .unwrap();
    let refused = service.register(gone, event.id.into()).await;
    assert!(
        matches!(refused, Err(super::EventsError::AccountGone)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn postgres_an_older_versions_deletion_record_refuses_sign_ups() {
    let Some((_dropped, db)) = postgres_db("tombstone") else {
        return;
    };
    tombstone_refuses(db).await;
}

#[tokio::test]
async fn sqlite_an_older_versions_deletion_record_refuses_sign_ups() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("tombstone.db"));
    tombstone_refuses(Db::connect(&settings(url), &[&MIGRATIONS]).unwrap()).await;
}

/// People signing up for one event at once.
const CROWD: usize = 200;

/// A crowd signs up for one event of fewer seats, all at once: every answer is a seat or a
/// place, the seats are exactly the capacity, the places run 1, 2, 3… in the order of arrival
/// the database recorded (the order people were told is the order they wait in), and the
/// sign-ups went in groups: fewer than `most` statements. Returns how many statements.
async fn crowd_admitted_in_groups(db: Db, counter: &mut Counter, most: usize) -> i64 {
    const CAPACITY: u32 = 50;
    let service = Arc::new(service(&db));
    let event = publish(&service, member(), "Crowded", CAPACITY).await;
    let id: super::domain::EventId = event.id.into();
    let people: Vec<AuthUser> = (0..CROWD).map(|_| member()).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(CROWD));
    let before = counter.read();
    let tasks: Vec<_> = people
        .iter()
        .map(|&who| {
            let (service, barrier) = (service.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                service.register(who, id).await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let statements = counter.read() - before;

    answers.sort_by_key(|a| a.created_at);
    let seats = CAPACITY as usize;
    assert!(
        answers[..seats]
            .iter()
            .all(|a| a.status == RegistrationStatus::Confirmed && a.position.is_none()),
        "the first {seats} to arrive have the seats"
    );
    let places: Vec<Option<i64>> = answers[seats..].iter().map(|a| a.position).collect();
    let expected: Vec<Option<i64>> = (1..=(CROWD - seats) as i64).map(Some).collect();
    assert_eq!(places, expected, "places in the order of arrival");
    let told: Vec<Uuid> = answers.iter().map(|a| a.user_id).collect();
    let (stored, found) = db
        .run(move |conn| {
            let stored = super::store::registered_users(conn, id)?;
            let found = super::store::find_event(conn, id)?.expect("the event");
            Ok::<_, super::EventsError>((stored, found))
        })
        .await
        .unwrap();
    let stored: Vec<Uuid> = stored.iter().map(|u| u.as_uuid()).collect();
    assert_eq!(
        stored, told,
        "the database's order is the order people were told"
    );
    assert_eq!(
        (found.seats_taken(), found.waitlist_length()),
        (CAPACITY as i32, (CROWD - seats) as i32)
    );
    assert!(
        statements < most as i64,
        "{statements} statements for {CROWD} sign-ups: not grouped"
    );
    statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_crowd_is_admitted_in_groups_in_arrival_order() {
    let Some((dropped, db)) = postgres_db_with("crowd", 8) else {
        return;
    };
    let Some(mut counter) = Counter::postgres(&dropped.name) else {
        return;
    };
    // One each, alone; one per group, grouped.
    let statements = crowd_admitted_in_groups(db, &mut counter, CROWD / 4).await;
    eprintln!("{CROWD} sign-ups on PostgreSQL in {statements} statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_crowd_is_admitted_in_groups_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("crowd.db"));
    let db = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    let mut counter = Counter::sqlite(&db).await;
    // Six each, alone (a transaction each); grouped, the guard and the registration each and
    // the rest once per group.
    let statements = crowd_admitted_in_groups(db, &mut counter, 3 * CROWD).await;
    eprintln!("{CROWD} sign-ups on SQLite in {statements} statements");
}

/// Two instances of the module on one database, crowds signing up through both at once and
/// everyone twice (once through each), many rounds: each person's sign-ups give one
/// registration and one "registered already", whichever group each joined and whichever of two
/// groups failed on the other's registration; the seats are exactly the capacity and the places
/// the arrival order.
async fn two_instances_share_a_crowd(one: Db, other: Db) {
    const ROUNDS: usize = 12;
    let instances = [Arc::new(service(&one)), Arc::new(service(&other))];
    for _ in 0..ROUNDS {
        crowd_through_both(&instances, &one).await;
    }
}

async fn crowd_through_both(instances: &[Arc<EventsService>; 2], db: &Db) {
    use super::EventsError as E;
    const PEOPLE: usize = 60;
    const CAPACITY: u32 = 20;
    let event = publish(&instances[0], member(), "Twice", CAPACITY).await;
    let id: super::domain::EventId = event.id.into();
    let people: Vec<AuthUser> = (0..PEOPLE).map(|_| member()).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(2 * PEOPLE));
    let mut tasks = Vec::new();
    for (n, &who) in people.iter().enumerate() {
        // Half of them come through the other instance first.
        for instance in [n % 2, 1 - n % 2] {
            let (service, barrier) = (instances[instance].clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (who.id, service.register(who, id).await)
            }));
        }
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (_, Ok(registration)) => admitted.push(registration),
            (_, Err(E::AlreadyRegistered)) => refused += 1,
            (who, Err(other)) => panic!("{who}: {other:?}"),
        }
    }
    assert_eq!((admitted.len(), refused), (PEOPLE, PEOPLE));
    admitted.sort_by_key(|a| a.created_at);
    let statuses: Vec<(RegistrationStatus, Option<i64>)> =
        admitted.iter().map(|a| (a.status, a.position)).collect();
    let expected: Vec<(RegistrationStatus, Option<i64>)> = (0..PEOPLE)
        .map(|n| match n < CAPACITY as usize {
            true => (RegistrationStatus::Confirmed, None),
            false => (
                RegistrationStatus::Waitlisted,
                Some((n + 1 - CAPACITY as usize) as i64),
            ),
        })
        .collect();
    assert_eq!(
        statuses, expected,
        "seats first, then places in arrival order"
    );
    let found = db
        .run(move |conn| super::store::find_event(conn, id))
        .await
        .unwrap()
        .expect("the event");
    assert_eq!(
        (found.seats_taken(), found.waitlist_length()),
        (CAPACITY as i32, (PEOPLE - CAPACITY as usize) as i32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_instances_share_a_crowd() {
    let Some((dropped, one)) = postgres_db_with("two_instances", 8) else {
        return;
    };
    let mut other = settings(DatabaseUrl::Postgres(format!(
        "{}/{}",
        dropped.admin, dropped.name
    )));
    other.max_connections = 8;
    let other = Db::connect(&other, &[&MIGRATIONS]).unwrap();
    two_instances_share_a_crowd(one, other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_instances_share_a_crowd() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("two.db"));
    let one = Db::connect(&settings(url.clone()), &[&MIGRATIONS]).unwrap();
    let other = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    two_instances_share_a_crowd(one, other).await;
}

/// An account deleted while its sign-up waited for its group's turn is refused when the group
/// goes, without a statement for it, and the others of the group are admitted.
#[tokio::test]
async fn an_account_deleted_while_its_sign_up_waits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("gone.db"));
    let db = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    let event = publish(&service(&db), member(), "Gone", 5).await;
    let id: super::domain::EventId = event.id.into();
    let (gone, kept) = (member(), member());
    let deleted = DeletedAccounts::new(std::time::Duration::from_secs(900));
    deleted.insert(gone.id.as_uuid(), Utc::now());
    let (outcomes, stored) = db
        .run(move |conn| {
            let outcomes = super::admissions::admit_all(conn, id, &[gone.id, kept.id], &deleted)?;
            Ok::<_, super::EventsError>((outcomes, super::store::registered_users(conn, id)?))
        })
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Err(super::EventsError::AccountGone)),
        "{:?}",
        outcomes[0]
    );
    assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    assert_eq!(stored, vec![kept.id]);
}
