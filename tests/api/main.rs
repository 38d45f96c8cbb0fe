//! Black-box tests of the public HTTP contract (`docs/api.md`): a real server, real HTTP, a
//! real database. Every test runs on SQLite and on PostgreSQL.

mod architecture;
mod harness;
mod helpers;
mod hostile_inputs;
#[cfg(feature = "split")]
mod processes;

mod auth;
mod battery;
mod calendar;
mod compression;
#[cfg(feature = "split")]
mod contract;
mod edges;
mod events;
#[cfg(feature = "split")]
mod faults;
mod gateway;
mod migrations;
mod notifications;
mod outbox;
#[cfg(feature = "split")]
mod proxy;
mod races;
mod read_cache;
mod registrations;
#[cfg(feature = "split")]
mod traces;
mod users;
mod web_app;

fn main() {
    harness::main();
}
