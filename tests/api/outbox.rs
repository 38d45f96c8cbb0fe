//! The outbox relay through the library's public parts: concurrent relays on PostgreSQL split
//! the pending events between them, publishing each exactly once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use modkit::events::{DeliveryError, DomainEvent, EventPublisher};
use rsvp::{modules::users, topology};

use crate::helpers::{Backend, TestDatabase, settings_for};

/// Records every publication; slow enough that two relays overlap.
#[derive(Default)]
struct CountingPublisher(Mutex<HashMap<uuid::Uuid, usize>>);

#[async_trait]
impl EventPublisher for CountingPublisher {
    async fn publish(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        *self.0.lock().unwrap().entry(event.id).or_default() += 1;
        Ok(())
    }
}

const EVENTS: usize = 250;

crate::tests!(needs [Postgres]: concurrent_relays_on_postgres_publish_each_event_once);
crate::backend_tests!(a_drained_outbox_stays_drained);

/// A relay marks what it published: draining again publishes nothing (before: on SQLite the
/// mark bound its parameters in the wrong order, and every poll published every event again).
async fn a_drained_outbox_stays_drained(backend: Backend) {
    let db = TestDatabase::create(backend);
    let settings = settings_for(&db);
    let process = topology::process(&settings, &[&users::MODULE])
        .await
        .unwrap();
    let service = users::service(&process).await.unwrap();
    for i in 0..3 {
        let user = service
            .register(&format!("d{i}@example.com"), "password1", "D")
            .await
            .unwrap();
        service.delete_account(user.id).await.unwrap();
    }
    let publisher = Arc::new(CountingPublisher::default());
    let relay = service
        .outbox()
        .relay(publisher.clone(), Duration::from_secs(60));
    assert_eq!(relay.drain().await.unwrap(), 3);
    assert_eq!(relay.drain().await.unwrap(), 0, "published again");
    assert!(publisher.0.lock().unwrap().values().all(|&n| n == 1));
}

async fn concurrent_relays_on_postgres_publish_each_event_once() {
    let db = TestDatabase::create(Backend::Postgres);
    let settings = settings_for(&db);
    let process = topology::process(&settings, &[&users::MODULE])
        .await
        .unwrap();
    let service = users::service(&process).await.unwrap();
    // More than two batches (a relay claims 100 rows at a time), so both relays get work.
    for i in 0..EVENTS {
        let user = service
            .register(&format!("o{i}@example.com"), "password1", "O")
            .await
            .unwrap();
        service.delete_account(user.id).await.unwrap();
    }

    let publisher = Arc::new(CountingPublisher::default());
    let relay = || {
        service
            .outbox()
            .relay(publisher.clone(), Duration::from_secs(60))
    };
    let (a, b) = (relay(), relay());
    let (sent_a, sent_b) = tokio::join!(a.drain(), b.drain());
    let (sent_a, sent_b) = (sent_a.unwrap(), sent_b.unwrap());
    let published = publisher.0.lock().unwrap().clone();
    assert_eq!(published.len(), EVENTS, "every event published");
    assert!(
        published.values().all(|&n| n == 1),
        "an event was published twice: {published:?}"
    );
    assert_eq!(sent_a + sent_b, EVENTS);
    // The relays split the batches between them instead of one idling.
    assert!(
        sent_a > 0 && sent_b > 0,
        "one relay did all the work: {sent_a} + {sent_b}"
    );
    eprintln!("FIGURE outbox: two concurrent relays published {sent_a} + {sent_b} events");
    // Nothing is left for a later run.
    assert_eq!(relay().drain().await.unwrap(), 0);
}
