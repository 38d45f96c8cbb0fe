//! Domain events between modules: the envelope, the publisher a module's outbox relay hands
//! them to, the handler a consuming module implements, and how a handler is to be reached — the
//! two kinds of delivery, kept apart by type:
//!
//! - [`Delivery::WorkQueue`]: one instance of the consuming process handles each event (work that
//!   must happen once: a cascade after a deletion);
//! - [`Delivery::Broadcast`]: every instance learns every event (what each instance keeps in
//!   memory: which accounts are deleted), replayed from some time back when an instance starts.
//!
//! In one process, [`InProcessBus`] delivers to every handler directly (one instance: both kinds
//! are the same there). Across processes, a broker does (rsvp uses NATS JetStream: a durable
//! consumer the instances share for a work queue, an ordered consumer of its own for each
//! instance for a broadcast). Delivery is at least once; handlers are idempotent.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A fact one module announces after its transaction committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainEvent {
    /// Unique per event; consumers record it to make redelivery a no-op.
    pub id: Uuid,
    /// What happened, `<module>.<fact>` (`user.deleted`); handlers subscribe by it.
    pub topic: String,
    /// The fact's data, as JSON.
    pub payload: serde_json::Value,
    /// When it happened (its transaction's time).
    pub occurred_at: DateTime<Utc>,
}

/// Why a domain event was not delivered (or not handled); it is delivered again later.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DeliveryError(Box<dyn std::error::Error + Send + Sync>);

impl DeliveryError {
    /// Wraps any error, or a message, keeping its chain.
    pub fn because(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(cause.into())
    }
}

/// Where an outbox relay hands its events: in process, or a broker in the split topology.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Delivers `event`; `Ok` only once it is safely handed over.
    async fn publish(&self, event: &DomainEvent) -> Result<(), DeliveryError>;
}

/// A consumer of domain events.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The topics this handler wants.
    fn topics(&self) -> &'static [&'static str];
    /// Applies `event`; must be a no-op when the same event id was already handled.
    async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError>;
}

/// The monolith's bus: publishing calls the subscribed handlers directly. An event counts as
/// delivered only once every interested handler succeeded.
#[derive(Default, Clone)]
pub struct InProcessBus {
    handlers: Vec<Arc<dyn EventHandler>>,
}

impl InProcessBus {
    /// Adds a handler for the topics it names.
    pub fn subscribe(mut self, handler: Arc<dyn EventHandler>) -> Self {
        self.handlers.push(handler);
        self
    }
}

#[async_trait]
impl EventPublisher for InProcessBus {
    async fn publish(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        for handler in &self.handlers {
            if handler.topics().contains(&event.topic.as_str()) {
                handler.handle(event).await?;
            }
        }
        Ok(())
    }
}

/// How a consumer wants a domain event delivered when its process runs as several instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// One instance handles each event: work that must happen once.
    WorkQueue,
    /// Every instance handles every event, and an instance that starts first replays the events
    /// of `replay` back: for what each instance keeps in memory.
    Broadcast {
        /// How far back a starting instance relearns.
        replay: Duration,
    },
}

/// A handler and how it wants to be reached.
#[derive(Clone)]
pub struct Subscription {
    /// The handler; it names its topics.
    pub handler: Arc<dyn EventHandler>,
    /// Work queue or broadcast.
    pub delivery: Delivery,
}

impl Subscription {
    /// `handler` on a work queue: one instance handles each event.
    pub fn work_queue(handler: Arc<dyn EventHandler>) -> Self {
        Self {
            handler,
            delivery: Delivery::WorkQueue,
        }
    }

    /// `handler` on a broadcast: every instance handles every event, a starting one replaying
    /// the events of `replay` back.
    pub fn broadcast(handler: Arc<dyn EventHandler>, replay: Duration) -> Self {
        Self {
            handler,
            delivery: Delivery::Broadcast { replay },
        }
    }

    /// Whether `event` is one of the handler's topics.
    pub fn wants(&self, event: &DomainEvent) -> bool {
        self.handler.topics().contains(&event.topic.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the topics it handled; wants `a.done` and `b.done`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl EventHandler for Recorder {
        fn topics(&self) -> &'static [&'static str] {
            &["a.done", "b.done"]
        }

        async fn handle(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
            self.0.lock().unwrap().push(event.topic.clone());
            Ok(())
        }
    }

    fn event(topic: &str) -> DomainEvent {
        DomainEvent {
            id: Uuid::nil(),
            topic: topic.into(),
            payload: serde_json::json!({}),
            occurred_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_handler_gets_every_topic_it_names_and_no_other() {
        let recorder = Arc::new(Recorder::default());
        let bus = InProcessBus::default().subscribe(recorder.clone());
        for topic in ["a.done", "c.done", "b.done"] {
            bus.publish(&event(topic)).await.unwrap();
        }
        assert_eq!(*recorder.0.lock().unwrap(), ["a.done", "b.done"]);
        let subscription = Subscription::work_queue(recorder);
        assert!(subscription.wants(&event("b.done")) && !subscription.wants(&event("c.done")));
    }

    #[test]
    fn the_two_kinds_of_delivery_are_told_apart() {
        let handler: Arc<dyn EventHandler> = Arc::new(Recorder::default());
        let once = Subscription::work_queue(handler.clone());
        let everywhere = Subscription::broadcast(handler, Duration::from_secs(960));
        assert_eq!(once.delivery, Delivery::WorkQueue);
        assert_eq!(
            everywhere.delivery,
            Delivery::Broadcast {
                replay: Duration::from_secs(960)
            }
        );
    }
}
