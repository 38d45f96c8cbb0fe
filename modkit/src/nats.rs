//! Domain events over NATS JetStream (the `nats` feature): the broker a process uses once the
//! modules that publish and consume an event run in different processes. The outbox relay publishes each event with
//! its id as `Nats-Msg-Id`, so JetStream drops a republished duplicate. Two kinds of delivery,
//! kept apart by the kit's [`Delivery`] ([`spawn_subscription`]): a work queue (a durable pull
//! consumer shared by a service's instances delivers each event to one of them, at least once,
//! acknowledged only after the handler committed) and a broadcast (every process sees every
//! event, for what each instance keeps in memory). Both survive the broker being down: the publisher's
//! failures leave rows in the outbox, the consumers reconnect with backoff.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{DeliverPolicy, pull},
    stream,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use crate::events::{
    Delivery, DeliveryError, DomainEvent, EventHandler, EventPublisher, Subscription,
};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the broker is and how this deployment's subjects, stream and consumers are named.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NatsSettings {
    /// `nats://host:port`.
    pub url: String,
    /// The JetStream stream holding the deployment's domain events.
    pub stream: String,
    /// Subjects are `<prefix>.<topic>`; streams of different deployments must not overlap.
    pub subject_prefix: String,
    /// Prefix of the durable consumers' names (`<consumer>-<module>`); the instances of one
    /// module share its consumer and split the work.
    pub consumer: String,
}

/// What failed in a conversation with the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The client could not be set up for `url`.
    #[error("nats {url}: {source}")]
    Connect {
        /// The broker's URL.
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// A JetStream call (`what` names it: the stream, the consumer, an ack...) failed.
    #[error("{what}: {source}")]
    JetStream {
        /// The call.
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BrokerError {
    fn jetstream(
        what: impl Into<String>,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Self {
        let what = what.into();
        move |source| Self::JetStream { what, source }
    }
}

fn subject(settings: &NatsSettings, topic: &str) -> String {
    format!("{}.{topic}", settings.subject_prefix)
}

/// Connects lazily: a broker that is down at start is retried in the background.
pub async fn connect(settings: &NatsSettings) -> Result<jetstream::Context, BrokerError> {
    let client = lazy_client(settings, options("rsvp")).await?;
    Ok(jetstream::new(client))
}

/// A client's options, named `name` in the broker's monitoring.
pub fn options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .name(name)
}

/// A client that connects in the background: start-up never waits for the broker.
pub async fn lazy_client(
    settings: &NatsSettings,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, BrokerError> {
    options
        .connect(&settings.url)
        .await
        .map_err(|source| BrokerError::Connect {
            url: settings.url.clone(),
            source,
        })
}

async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<stream::Stream, BrokerError> {
    let name = &settings.stream;
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject(settings, ">")],
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(|e| BrokerError::jetstream(format!("stream {name}"))(e.into()))
}

/// Publishes domain events to JetStream, deduplicated by event id.
pub struct NatsPublisher {
    js: jetstream::Context,
    settings: NatsSettings,
}

impl NatsPublisher {
    /// A publisher on `js`, to the subjects `settings` name.
    pub fn new(js: jetstream::Context, settings: &NatsSettings) -> Self {
        Self {
            js,
            settings: settings.clone(),
        }
    }
}

#[async_trait]
impl EventPublisher for NatsPublisher {
    async fn publish(&self, event: &DomainEvent) -> Result<(), DeliveryError> {
        let publish = async {
            ensure_stream(&self.js, &self.settings)
                .await
                .map_err(DeliveryError::because)?;
            let body = serde_json::to_vec(event).map_err(DeliveryError::because)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
            let ack = self
                .js
                .publish_with_headers(subject(&self.settings, &event.topic), headers, body.into())
                .await
                .map_err(DeliveryError::because)?;
            ack.await.map(drop).map_err(DeliveryError::because)
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::because("NATS did not acknowledge in time")),
        }
    }
}

/// Runs `subscription` until the process ends, reconnecting with backoff: a work queue on the
/// durable consumer `consumer` the instances share, so they split the events between
/// them; a broadcast on an ordered consumer of this instance's own, so it sees every event,
/// starting with those of the subscription's replay period (again after every reconnection:
/// broadcast handlers are idempotent).
pub fn spawn_subscription(
    js: jetstream::Context,
    settings: NatsSettings,
    consumer: String,
    subscription: Subscription,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let handler = subscription.handler.as_ref();
            let outcome = match subscription.delivery {
                Delivery::WorkQueue => consume(&js, &settings, &consumer, handler).await,
                Delivery::Broadcast { replay } => {
                    let since = Utc::now()
                        - chrono::Duration::from_std(replay).unwrap_or(chrono::Duration::MAX);
                    listen(&js, &settings, handler, since).await
                }
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, delivery = ?subscription.delivery, "event subscription interrupted; reconnecting");
                }
            }
            tokio::time::sleep(Duration::from_millis(250 * u64::from(failures.clamp(1, 8)))).await;
        }
    })
}

async fn consume(
    js: &jetstream::Context,
    settings: &NatsSettings,
    consumer: &str,
    handler: &dyn EventHandler,
) -> Result<(), BrokerError> {
    let stream = ensure_stream(js, settings).await?;
    let durable = stream
        .get_or_create_consumer(
            consumer,
            pull::Config {
                durable_name: Some(consumer.to_owned()),
                filter_subject: subject(settings, ">"),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BrokerError::jetstream(format!("consumer {consumer}"))(e.into()))?;
    let mut messages = durable
        .messages()
        .await
        .map_err(|e| BrokerError::jetstream("messages")(e.into()))?;
    tracing::info!(consumer, "consuming domain events");
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| BrokerError::jetstream("message")(e.into()))?;
        let outcome = match serde_json::from_slice::<DomainEvent>(&message.payload) {
            Ok(event) if handler.topics().contains(&event.topic.as_str()) => {
                handler.handle(&event).await
            }
            Ok(_) => Ok(()),
            Err(e) => {
                // Redelivering an unreadable message can never succeed: drop it, loudly.
                tracing::error!(error = %e, subject = %message.subject, "undecodable domain event dropped");
                Ok(())
            }
        };
        let ack = match outcome {
            Ok(()) => message.ack().await,
            Err(err) => {
                tracing::warn!(error = %err, "domain event handling failed; will be redelivered");
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
            }
        };
        ack.map_err(BrokerError::jetstream("ack"))?;
    }
    Ok(())
}

async fn listen(
    js: &jetstream::Context,
    settings: &NatsSettings,
    handler: &dyn EventHandler,
    since: DateTime<Utc>,
) -> Result<(), BrokerError> {
    let stream = ensure_stream(js, settings).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            // One topic is filtered by the broker; several are picked out below.
            filter_subject: match handler.topics() {
                [topic] => subject(settings, topic),
                _ => subject(settings, ">"),
            },
            deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await
        .map_err(|e| BrokerError::jetstream("broadcast consumer")(e.into()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| BrokerError::jetstream("broadcast messages")(e.into()))?;
    tracing::info!(topics = ?handler.topics(), "listening to broadcast domain events");
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| BrokerError::jetstream("message")(e.into()))?;
        match serde_json::from_slice::<DomainEvent>(&message.payload) {
            Ok(event) if !handler.topics().contains(&event.topic.as_str()) => {}
            Ok(event) => {
                if let Err(err) = handler.handle(&event).await {
                    tracing::error!(error = %err, topic = %event.topic, "broadcast domain event not applied");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, subject = %message.subject, "undecodable domain event dropped");
            }
        }
    }
    Ok(())
}
