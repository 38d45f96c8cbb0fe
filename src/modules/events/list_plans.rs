//! The event list's query plans: for every filter combination the API allows, with and without
//! a cursor, each backend reads one index range in list order — no full scan, no sort of the
//! matches. That is what keeps a page as fast at a million events as at a thousand
//! (`docs/benchmarks.md` has the figures); a plan is checked, not a time.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use diesel::{
    RunQueryDsl,
    connection::SimpleConnection,
    connection::{Instrumentation, InstrumentationEvent},
    prelude::*,
    sql_types::Text,
};
use uuid::Uuid;

use super::{EventFilter, MIGRATIONS, store};
use crate::platform::{
    db::{DatabaseSettings, DatabaseUrl, Db, DbConnection, DbError},
    pagination::{Cursor, PageRequest},
};

/// Every combination of the list's filters, with and without a cursor, and one of each for the
/// cancelled list.
fn combinations() -> Vec<(EventFilter, PageRequest)> {
    let now = Utc::now();
    let mut all = Vec::new();
    for mask in 0..32u8 {
        for cursor in [false, true] {
            let has = |bit: u8| mask & (1 << bit) != 0;
            let filter = EventFilter {
                from: has(0).then_some(now),
                to: has(1).then(|| now + Duration::days(30)),
                organizer_id: has(2).then(Uuid::now_v7),
                category: has(3).then(|| "Tech".to_owned()),
                location: has(4).then(|| "Berlin".to_owned()),
                q: None,
                when: Default::default(),
                cancelled: mask == 31,
            };
            let page = PageRequest {
                limit: 20,
                after: cursor.then(|| Cursor {
                    at: now,
                    id: Uuid::now_v7(),
                }),
            };
            all.push((filter, page));
        }
    }
    all
}

/// The columns an index must match by equality for `filter`.
fn equality_columns(filter: &EventFilter) -> Vec<&'static str> {
    let mut columns = vec!["status"];
    if filter.organizer_id.is_some() {
        columns.push("organizer_id");
    }
    if filter.category.is_some() {
        columns.push("category_key");
    }
    if filter.location.is_some() {
        columns.push("location_key");
    }
    columns
}

/// Records the SQL of the queries a connection runs.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text
                .split(" -- binds:")
                .next()
                .unwrap_or_default()
                .to_owned();
            self.0.lock().unwrap().push(sql);
        }
    }
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    line: String,
}

/// The list query's SQL for `filter` and `page`, as the store sends it (`recorder` listens to
/// `conn`).
fn list_sql(
    conn: &mut DbConnection,
    recorder: &Recorder,
    filter: &EventFilter,
    page: PageRequest,
) -> String {
    recorder.0.lock().unwrap().clear();
    store::list_events(conn, filter, page).expect("the list query runs");
    let recorded = recorder.0.lock().unwrap();
    recorded
        .iter()
        .rev()
        .find(|sql| sql.contains("FROM `events`") || sql.contains("FROM \"events\""))
        .cloned()
        .expect("the list query was recorded")
}

/// The plan's lines for `sql` on this connection's backend.
fn plan(conn: &mut DbConnection, sql: &str) -> Vec<String> {
    let lines: Vec<PlanLine> = match conn {
        DbConnection::Sqlite(c) => {
            // Unbound parameters are NULL; SQLite's plan does not depend on their values.
            let explained: Vec<SqlitePlanRow> =
                diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                    .load(c)
                    .expect("EXPLAIN QUERY PLAN");
            explained
                .into_iter()
                .map(|row| PlanLine { line: row.detail })
                .collect()
        }
        DbConnection::Postgres(c) => {
            let parameters = (1..).take_while(|n| sql.contains(&format!("${n}"))).count();
            let nulls = vec!["NULL"; parameters].join(", ");
            // The generic plan: the one chosen without looking at the values, as for any value.
            c.batch_execute(&format!(
                "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; \
                 SET plan_cache_mode = force_generic_plan; PREPARE list_plan AS {sql}"
            ))
            .expect("PREPARE");
            diesel::sql_query(
                "CREATE OR REPLACE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text AS $$ \
                 DECLARE r text; BEGIN FOR r IN EXECUTE 'EXPLAIN ' || q LOOP RETURN NEXT r; \
                 END LOOP; END $$ LANGUAGE plpgsql",
            )
            .execute(c)
            .expect("plan function");
            let lines = diesel::sql_query(format!(
                "SELECT pg_temp.plan_of('EXECUTE list_plan({nulls})') AS line"
            ))
            .load(c)
            .expect("EXPLAIN EXECUTE");
            c.batch_execute("DEALLOCATE list_plan").expect("DEALLOCATE");
            lines
        }
    };
    lines.into_iter().map(|l| l.line).collect()
}

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// What is wrong with `plan` for `filter`, if anything.
fn judge(backend: &str, filter: &EventFilter, plan: &[String]) -> Option<String> {
    let text = plan.join("\n");
    let columns = equality_columns(filter);
    let wrong = match backend {
        "sqlite" => {
            let search = plan
                .iter()
                .find(|l| l.starts_with("SEARCH events USING"))
                .map(String::as_str);
            match search {
                None => Some("no index search"),
                Some(_) if text.contains("SCAN events") => Some("a full scan"),
                Some(_) if text.contains("TEMP B-TREE") => Some("a sort of the matches"),
                Some(line) if columns.iter().any(|c| !line.contains(&format!("{c}=?"))) => {
                    Some("an index that does not match every equality filter")
                }
                Some(_) => None,
            }
        }
        _ => {
            let conditions: Vec<&String> =
                plan.iter().filter(|l| l.contains("Index Cond")).collect();
            if text.contains("Seq Scan") {
                Some("a full scan")
            } else if text.contains("Sort") {
                Some("a sort of the matches")
            } else if !text.contains("Index Scan") && !text.contains("Index Only Scan") {
                Some("no index scan")
            } else if columns
                .iter()
                .any(|c| !conditions.iter().any(|l| l.contains(&format!("{c} = "))))
            {
                Some("an index that does not match every equality filter")
            } else {
                None
            }
        }
    };
    wrong.map(|why| format!("{backend}: {filter:?} → {why}:\n{text}"))
}

async fn check_every_combination(db: &Db) {
    let backend = db.backend();
    let wrong = db
        .run(move |conn| {
            let mut wrong = Vec::new();
            let recorder = Recorder::default();
            conn.set_instrumentation(recorder.clone());
            for (filter, page) in combinations() {
                let sql = list_sql(conn, &recorder, &filter, page);
                // A second lower bound (`from` and the cursor's) would let the planner start
                // its range at the earlier one and walk to the other.
                let lower_bounds =
                    sql.matches("starts_at` >=").count() + sql.matches("starts_at\" >=").count();
                if lower_bounds > 1 {
                    wrong.push(format!(
                        "{backend}: {filter:?}: {lower_bounds} lower bounds"
                    ));
                }
                let plan = plan(conn, &sql);
                wrong.extend(judge(backend, &filter, &plan));
            }
            Ok::<_, DbError>(wrong)
        })
        .await
        .unwrap();
    assert!(
        wrong.is_empty(),
        "{} plans read too much:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

pub(super) fn settings(url: DatabaseUrl) -> DatabaseSettings {
    DatabaseSettings {
        url,
        max_connections: 1,
        connect_timeout_secs: 5,
        password_file: None,
    }
}

#[tokio::test]
async fn sqlite_reads_one_index_range_for_every_filter_combination() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("plans.db"));
    let db = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    check_every_combination(&db).await;
}

#[tokio::test]
async fn postgres_reads_one_index_range_for_every_filter_combination() {
    let Some((_dropped, db)) = postgres_db("plan") else {
        return;
    };
    check_every_combination(&db).await;
}

/// Drops a test's PostgreSQL database when it goes.
pub(super) struct DropDatabase {
    pub(super) admin: String,
    pub(super) name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Ok(mut server) = diesel::PgConnection::establish(&format!("{}/postgres", self.admin))
        {
            let _ = diesel::sql_query(format!("DROP DATABASE {} WITH (FORCE)", self.name))
                .execute(&mut server);
        }
    }
}

/// A fresh PostgreSQL database with the module's tables and the guard that drops it (bound in
/// this order, the pool goes first), or `None` (said) when no server answers and none is
/// required.
pub(super) fn postgres_db(test: &str) -> Option<(DropDatabase, Db)> {
    postgres_db_with(test, 1)
}

/// [`postgres_db`] with a pool of `connections`.
pub(super) fn postgres_db_with(test: &str, connections: u32) -> Option<(DropDatabase, Db)> {
    let admin = std::env::var("RSVP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let Ok(mut server) = diesel::PgConnection::establish(&format!("{admin}/postgres")) else {
        assert!(
            std::env::var_os("RSVP_REQUIRE_POSTGRES").is_none(),
            "PostgreSQL at {admin} is required (RSVP_REQUIRE_POSTGRES)"
        );
        eprintln!("SKIPPED: PostgreSQL {test} test ({admin} does not answer)");
        return None;
    };
    let name = format!("rsvp_{test}_{}", Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut server)
        .unwrap();
    let dropped = DropDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let mut settings = settings(DatabaseUrl::Postgres(format!("{admin}/{name}")));
    settings.max_connections = connections;
    let db = Db::connect(&settings, &[&MIGRATIONS]).unwrap();
    Some((dropped, db))
}

/// A search answers the same pages whichever plan its words take: the list read in order with
/// each event's text checked (common words), the lists of the words a query word begins merged
/// (sparse ones), the full-text index (a few matches listed by id, many found by walking the
/// list with each event checked against it) — each plan forced in turn. `LIST_BY_ID_UP_TO + 50`
/// events match "common", some of them "rare", "rarer" or both too, in an order their insertion
/// does not give, and many rare ones started already; every page, followed by its cursor, is
/// checked against the events filtered and sorted here.
async fn check_every_search_plan(db: &Db) {
    use super::{
        When,
        domain::{Event, EventDraft},
    };
    use crate::platform::{ids::UserId, zone::Zone};
    use store::SearchPlan;

    let many = usize::try_from(store::LIST_BY_ID_UP_TO).unwrap() + 50;
    let backend = db.backend();
    db.run(move |conn| {
        let organizer = UserId::from(Uuid::now_v7());
        let now = Utc::now();
        let mut events = Vec::new();
        for i in 0..many + 140 {
            // Start times interleave the kinds, and several events share one.
            let minutes = i64::try_from((i * 7919) % (many + 10) / 3).unwrap();
            let mut starts_at = now + Duration::days(1) + Duration::minutes(minutes);
            let title = match i {
                _ if i >= many + 10 => {
                    starts_at = now - Duration::minutes(minutes % 7);
                    format!("{} old {i}", ["rare", "rarer"][i % 2])
                }
                _ if i >= many => format!("other {i}"),
                _ if i % 181 == 0 => {
                    format!("Common {} {i}", ["rare", "rarer", "rare rarer"][i % 3])
                }
                _ => format!("common {i}"),
            };
            let draft = EventDraft {
                title,
                description: None,
                location: None,
                category: (i % 2 == 0).then(|| "Even".to_owned()),
                time_zone: Zone::utc(),
                starts_at,
                ends_at: starts_at + Duration::hours(1),
                capacity: 10,
            };
            events.push(Event::new(organizer, draft, Utc::now()));
        }
        conn.transaction(|conn| {
            for event in &events {
                store::insert_event(conn, event).unwrap();
            }
            Ok::<_, DbError>(())
        })?;
        let words = |text: &str| super::search::query_words(text).unwrap();
        assert_eq!(
            store::matching_ids(conn, &words("comm"), store::LIST_BY_ID_UP_TO).unwrap(),
            None,
            "{backend}: many matches: walked"
        );
        let rare = store::matching_ids(conn, &words("RARE"), store::LIST_BY_ID_UP_TO).unwrap();
        let rare_titles = events
            .iter()
            .filter(|e| e.draft.title.contains("rare"))
            .count();
        assert_eq!(
            rare.map(|ids| ids.len()),
            Some(rare_titles),
            "{backend}: a few: by id"
        );
        for (q, category, when) in [
            ("comm", None, When::All),
            ("comm", Some("even"), When::All),
            ("rare", None, When::All),
            ("rare", None, When::Past),
            // Two lists merged newest first, half their events ruled out: several rounds a page.
            ("rar", Some("even"), When::Past),
            ("rarer", Some("even"), When::Upcoming),
            ("common ra", Some("even"), When::All),
            ("zzz", None, When::All),
            // Inside every title, at the beginning of no word: nothing.
            ("ommon", None, When::All),
            // Ten events, none among the first rows read.
            ("other", None, When::All),
            // The beginning of more numbers than the word lists merge.
            ("5", None, When::All),
        ] {
            let wanted = words(q);
            let mut expected: Vec<&Event> = events
                .iter()
                .filter(|e| {
                    let text = super::search::words(&e.draft.title);
                    let started = e.draft.starts_at < Utc::now();
                    wanted
                        .iter()
                        .all(|w| text.iter().any(|t| t.starts_with(w.as_str())))
                        && (category.is_none() || e.draft.category.is_some())
                        && match when {
                            When::All => true,
                            When::Upcoming => !started,
                            When::Past => started,
                        }
                })
                .collect();
            expected.sort_by_key(|e| (e.draft.starts_at, e.id.as_uuid()));
            if when == When::Past {
                expected.reverse();
            }
            let filter = EventFilter {
                q: Some(wanted.clone()),
                category: category.map(str::to_owned),
                when,
                ..Default::default()
            };
            let mut page = PageRequest {
                limit: 50,
                after: None,
            };
            // The first pages and, for the long lists, pages far into them.
            for (n, chunk) in expected.chunks(50).enumerate().take(4) {
                // The page and the first event of the next, which tells there is one.
                let next = expected.len().min(n * 50 + 51);
                let want: Vec<Uuid> = expected[n * 50..next]
                    .iter()
                    .map(|e| e.id.as_uuid())
                    .collect();
                for plan in [
                    SearchPlan::Walk,
                    SearchPlan::WordLists,
                    SearchPlan::FullText,
                ] {
                    let got: Vec<Uuid> = store::list_events_by(conn, &filter, page, plan)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.id.as_uuid())
                        .collect();
                    assert_eq!(
                        got, want,
                        "{backend}: q={q} category={category:?} {when:?} page {n}, from {plan:?}"
                    );
                }
                let last = chunk.last().unwrap();
                page.after = Some(Cursor {
                    at: last.draft.starts_at,
                    id: last.id.as_uuid(),
                });
            }
            if expected.is_empty() {
                assert!(store::list_events(conn, &filter, page).unwrap().is_empty());
            }
        }
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sqlite_search_pages_are_the_same_by_every_plan() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(dir.path().join("search.db"));
    let db = Db::connect(&settings(url), &[&MIGRATIONS]).unwrap();
    check_every_search_plan(&db).await;
}

#[tokio::test]
async fn postgres_search_pages_are_the_same_by_every_plan() {
    let Some((_dropped, db)) = postgres_db("search") else {
        return;
    };
    check_every_search_plan(&db).await;
}
