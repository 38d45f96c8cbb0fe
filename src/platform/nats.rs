//! Read-cache changes between the instances of a deployment, over NATS core (split build). The
//! domain events' broker is the kit's (`modkit::nats`); this uses its client set-up.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use modkit::nats::{BrokerError, NatsSettings, lazy_client, options};

use super::changes::{Change, ChangeFanout, Changes};

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
