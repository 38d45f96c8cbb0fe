//! Domain events over NATS JetStream (split build). The outbox relay publishes each event with
//! its id as `Nats-Msg-Id`, so JetStream drops a republished duplicate. Two kinds of delivery,
//! kept apart by the kit's [`Delivery`] ([`spawn_subscription`]): a work queue (a durable pull
//! consumer shared by a service's instances delivers each event to one of them, at least once,
//! acknowledged only after the handler committed) and a broadcast (every process sees every
//! event, for what each instance keeps in memory). Both survive the broker being down: the publisher's
//! failures leave rows in the outbox, the consumers reconnect with backoff.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{DeliverPolicy, pull},
    stream,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::changes::{Change, ChangeFanout, Changes};
use modkit::events::{
    Delivery, DeliveryError, DomainEvent, EventHandler, EventPublisher, Subscription,
};

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// The `nats` section of the configuration (split build).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NatsSettings {
    pub url: String,
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
    #[error("nats {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    /// A JetStream call (`what` names it: the stream, the consumer, an ack...) failed.
    #[error("{what}: {source}")]
    JetStream {
        what: String,
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
fn options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .name(name)
}

/// A client that connects in the background: start-up never waits for the broker.
async fn lazy_client(
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

/// Where read-cache changes travel: a core NATS subject beside the stream's subjects (not under
/// them, so JetStream does not store them). They are worth something only for milliseconds.
fn changes_subject(settings: &NatsSettings) -> String {
    format!("{}_changes", settings.subject_prefix)
}

/// One process's change, as sent to the others.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChangeMessage {
    /// The sending process, which applied the change already and skips its own message.
    origin: uuid::Uuid,
    change: Change,
}

/// Changes queued for sending; full only if the broker is away for long, and then dropping a
/// change is bounded by the caches' TTL.
const CHANGES_QUEUE: usize = 4096;

/// The sending half of the change fan-out: never waits on the broker.
struct NatsChanges(tokio::sync::mpsc::Sender<Change>);

impl ChangeFanout for NatsChanges {
    fn send(&self, change: &Change) {
        if self.0.try_send(change.clone()).is_err() {
            tracing::warn!(
                ?change,
                "change fan-out queue full; other instances rely on the cache TTL"
            );
        }
    }
}

/// Connects `changes` to the other instances over NATS core: this process's announcements are
/// published, the others' applied here. Every (re)connection applies
/// [`Change::Everything`], since announcements sent while disconnected were missed. Returns
/// the publishing and subscribing tasks.
pub async fn fan_out_changes(
    settings: &NatsSettings,
    changes: Arc<Changes>,
) -> Result<[tokio::task::JoinHandle<()>; 2], BrokerError> {
    let origin = uuid::Uuid::now_v7();
    let on_event = changes.clone();
    let on_connect = options("rsvp-changes").event_callback(move |event| {
        let changes = on_event.clone();
        async move {
            if matches!(event, async_nats::Event::Connected) {
                changes.apply(&Change::Everything);
            }
        }
    });
    let client = lazy_client(settings, on_connect).await?;
    let subject = changes_subject(settings);
    let (queue, mut queued) = tokio::sync::mpsc::channel(CHANGES_QUEUE);
    let publisher = {
        let (client, subject) = (client.clone(), subject.clone());
        tokio::spawn(async move {
            while let Some(change) = queued.recv().await {
                let body = serde_json::to_vec(&ChangeMessage { origin, change })
                    .expect("a change always serializes");
                if let Err(err) = client.publish(subject.clone(), body.into()).await {
                    tracing::warn!(error = %err, "change not sent; other instances rely on the cache TTL");
                }
            }
        })
    };
    let subscriber = {
        let changes = changes.clone();
        tokio::spawn(async move {
            loop {
                match client.subscribe(subject.clone()).await {
                    Ok(mut messages) => {
                        while let Some(message) = messages.next().await {
                            match serde_json::from_slice::<ChangeMessage>(&message.payload) {
                                Ok(m) if m.origin == origin => {}
                                Ok(m) => changes.apply(&m.change),
                                Err(err) => {
                                    tracing::warn!(error = %err, "unreadable change message")
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot subscribe to changes"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    changes.fan_out(Arc::new(NatsChanges(queue)));
    Ok([publisher, subscriber])
}
