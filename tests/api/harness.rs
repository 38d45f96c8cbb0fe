//! The suite's own runner (libtest-mimic): every test is registered with what it needs — a
//! PostgreSQL server, the split topology, a browser — and one whose need is missing here is
//! reported as *ignored*: skipped, visibly, to `cargo test` and to nextest, never counted as
//! passed without having run. CI requires every server (`RSVP_REQUIRE_*=1`): there a missing one
//! runs the test, which fails saying what is missing.
//!
//! Tests are registered next to their code with [`crate::backend_tests!`] (each test on SQLite
//! and PostgreSQL) or [`crate::tests!`] (once).

use std::{future::Future, pin::Pin, sync::OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};

/// What a test needs besides the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A PostgreSQL server (`RSVP_TEST_POSTGRES_URL`).
    Postgres,
    /// The split topology (`RSVP_TEST_TOPOLOGY=split`): several instances of a service.
    #[cfg_attr(not(feature = "split"), allow(dead_code))]
    Split,
    /// Chromium, Node.js and playwright-core (`tests/web`).
    Browser,
    /// Python's aiosmtpd, for a real SMTP server on loopback (`tests/smtp/recorder.py`).
    Smtp,
    /// Python's icalendar, a real calendar parser (`tests/calendar/read.py`).
    Calendar,
}

impl Need {
    const ALL: [Need; 5] = [
        Need::Postgres,
        Need::Split,
        Need::Browser,
        Need::Smtp,
        Need::Calendar,
    ];

    /// Why the need is not met here, when it is not and not required either. Asked once per
    /// process: nextest starts the test binary once per test, and asking Python or Node for every
    /// registered test cost each of those starts seconds.
    fn missing(self) -> Option<String> {
        static MISSING: OnceLock<Vec<Option<String>>> = OnceLock::new();
        MISSING.get_or_init(|| Need::ALL.iter().map(|need| need.find_missing()).collect())
            [Need::ALL
                .iter()
                .position(|need| *need == self)
                .expect("listed")]
        .clone()
    }

    /// A need that is required is never looked for: the test runs and fails if it is missing.
    fn find_missing(self) -> Option<String> {
        match self {
            Need::Postgres => (!required("RSVP_REQUIRE_POSTGRES")
                && !crate::helpers::postgres_reachable())
            .then(|| "no PostgreSQL server (set RSVP_TEST_POSTGRES_URL)".to_owned()),
            Need::Split => (crate::helpers::topology() != crate::helpers::Topology::Split)
                .then(|| "needs RSVP_TEST_TOPOLOGY=split".to_owned()),
            Need::Browser => (!required("RSVP_REQUIRE_BROWSER"))
                .then(crate::web_app::browser_missing)
                .flatten(),
            Need::Smtp => (!required("RSVP_REQUIRE_SMTP") && !python_has("aiosmtpd"))
                .then(|| "no SMTP server for tests (apt install python3-aiosmtpd)".to_owned()),
            Need::Calendar => (!required("RSVP_REQUIRE_CALENDAR") && !python_has("icalendar"))
                .then(|| "no calendar parser (pip install icalendar)".to_owned()),
        }
    }
}

/// Whether Python can import `module`.
fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn required(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v == "1")
}

/// One registered test.
pub struct Case {
    /// `module_path!()` where it was registered (`api::races`).
    pub module: &'static str,
    /// Its name below the module (`sqlite::concurrent_sign_ups_...`).
    pub name: &'static str,
    pub needs: &'static [Need],
    pub run: fn() -> Pin<Box<dyn Future<Output = ()>>>,
}

inventory::collect!(Case);

/// Runs the registered tests as the command line asks (`--list`, filters, `--ignored`...).
pub fn main() {
    let arguments = Arguments::from_args();
    let mut skipped: std::collections::BTreeMap<String, usize> = Default::default();
    let mut trials: Vec<Trial> = inventory::iter::<Case>
        .into_iter()
        .map(|case| {
            let name = format!(
                "{}::{}",
                case.module.strip_prefix("api::").unwrap_or(case.module),
                case.name
            );
            let missing = case.needs.iter().find_map(|need| need.missing());
            if let Some(why) = &missing {
                *skipped.entry(why.clone()).or_default() += 1;
            }
            Trial::test(name, move || run(case.run)).with_ignored_flag(missing.is_some())
        })
        .collect();
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    // Said once per run: nextest runs each test alone (`--exact`) and counts the skipped itself.
    if !arguments.list && !arguments.exact {
        for (why, count) in &skipped {
            eprintln!("SKIPPED: {count} tests ({why})");
        }
    }
    libtest_mimic::run(&arguments, trials).exit();
}

/// Runs one test on a runtime of its own, a panic being its failure.
fn run(test: fn() -> Pin<Box<dyn Future<Output = ()>>>) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("no runtime: {e}")))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test()))).map_err(
        |panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the test panicked".to_owned());
            Failed::from(message)
        },
    )
}

/// Registers each named `async fn <test>(Backend)` twice: `sqlite::<test>` and
/// `postgres::<test>` (that one needs a PostgreSQL server). `split: a, b` registers tests that
/// need the split topology; `split, sqlite: a` (or `postgres`) one backend only; `smtp: a, b`
/// tests that need an SMTP server of their own, `calendar: a` a calendar parser.
#[macro_export]
macro_rules! backend_tests {
    (split, $backend:ident: $($name:ident),* $(,)?) => {
        $( $crate::backend_tests!(@case $backend, $name, [$crate::harness::Need::Split]); )*
    };
    (smtp: $($name:ident),* $(,)?) => {
        $crate::backend_tests!(@needing Smtp: $($name),*);
    };
    (calendar: $($name:ident),* $(,)?) => {
        $crate::backend_tests!(@needing Calendar: $($name),*);
    };
    (@needing $need:ident: $($name:ident),*) => {
        $(
            $crate::backend_tests!(@case sqlite, $name, [$crate::harness::Need::$need]);
            $crate::backend_tests!(@case postgres, $name, [$crate::harness::Need::$need]);
        )*
    };
    (split: $($name:ident),* $(,)?) => {
        $(
            $crate::backend_tests!(@case sqlite, $name, [$crate::harness::Need::Split]);
            $crate::backend_tests!(@case postgres, $name, [$crate::harness::Need::Split]);
        )*
    };
    (@case sqlite, $name:ident, [$($need:expr),*]) => {
        inventory::submit! {
            $crate::harness::Case {
                module: module_path!(),
                name: concat!("sqlite::", stringify!($name)),
                needs: &[$($need),*],
                run: || Box::pin($name($crate::helpers::Backend::Sqlite)),
            }
        }
    };
    (@case postgres, $name:ident, [$($need:expr),*]) => {
        inventory::submit! {
            $crate::harness::Case {
                module: module_path!(),
                name: concat!("postgres::", stringify!($name)),
                needs: &[$crate::harness::Need::Postgres $(, $need)*],
                run: || Box::pin($name($crate::helpers::Backend::Postgres)),
            }
        }
    };
    ($($name:ident),* $(,)?) => {
        $(
            $crate::backend_tests!(@case sqlite, $name, []);
            $crate::backend_tests!(@case postgres, $name, []);
        )*
    };
}

/// Registers each named `async fn <test>()` once; `needs [..]: a, b` with what they need.
#[macro_export]
macro_rules! tests {
    (needs $needs:tt: $($name:ident),* $(,)?) => {
        $( $crate::tests!(@one $needs $name); )*
    };
    (@one [$($need:ident),*] $name:ident) => {
        inventory::submit! {
            $crate::harness::Case {
                module: module_path!(),
                name: stringify!($name),
                needs: &[$($crate::harness::Need::$need),*],
                run: || Box::pin($name()),
            }
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::tests!(needs []: $($name),*);
    };
}
