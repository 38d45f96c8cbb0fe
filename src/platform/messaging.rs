//! Domain events between modules: the envelope, the publisher a module's outbox relay calls, and
//! the handler a consuming module implements. Delivery is at least once; handlers are idempotent.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A fact one module announces after its transaction committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainEvent {
    /// Unique per event; consumers record it to make redelivery a no-op.
    pub id: Uuid,
    pub topic: String,
    pub payload: serde_json::Value,
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
