//! Processes starting together on one database (replicas, two events services) all come up:
//! exactly one applies the migrations, the others find nothing left to do.

use rsvp::{
    modules::{events, users},
    topology,
};

use crate::helpers::{Backend, TestDatabase, settings_for};

crate::backend_tests!(instances_starting_together_migrate_once);

async fn instances_starting_together_migrate_once(backend: Backend) {
    let db = TestDatabase::create(backend);
    let settings = settings_for(&db);
    let starts = (0..4).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move {
            topology::connect(&settings, &[&users::MIGRATIONS, &events::MIGRATIONS])
                .await
                .map(drop)
        })
    });
    for result in futures_util::future::join_all(starts).await {
        result.unwrap().expect("every instance starts");
    }
}
