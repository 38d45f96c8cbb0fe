//! Announcements of what a write changed, so that every read cache holding it drops it. A
//! module announces after its transaction committed and before it answers: the change is
//! applied to this process's caches at once (a client reads its own write), then handed to the
//! fan-out (split build: NATS core) for the other instances, which apply it within milliseconds.
//! A lost announcement is bounded by the caches' TTL.

use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a committed write changed, as read caches need to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// One item changed. `of` names its kind, a constant of the module that owns it (`user`,
    /// `event`); `listed`: also what lists of that kind contain (an event created, moved in
    /// time or cancelled), not only the item itself.
    Item { of: String, id: Uuid, listed: bool },
    /// Anything may have changed: announcements may have been missed (a broker reconnect).
    Everything,
}

impl Change {
    /// A change of item `id` of kind `of`, `listed` when lists of that kind changed too.
    pub fn item(of: &str, id: Uuid, listed: bool) -> Self {
        Self::Item {
            of: of.to_owned(),
            id,
            listed,
        }
    }

    /// The id of the item of kind `of` that changed, and whether lists changed too; `None` for
    /// items of other kinds and for [`Change::Everything`].
    pub fn of_kind(&self, kind: &str) -> Option<(Uuid, bool)> {
        match self {
            Self::Item { of, id, listed } if of == kind => Some((*id, *listed)),
            _ => None,
        }
    }
}

/// A cache that drops what a change made stale.
pub trait ChangeListener: Send + Sync {
    /// Drops what `change` affects; must not block.
    fn apply(&self, change: &Change);
}

/// Carries changes to the other instances of a deployment.
pub trait ChangeFanout: Send + Sync {
    /// Sends `change` without waiting; a send that fails is bounded by the caches' TTL.
    fn send(&self, change: &Change);
}

/// A process's change announcements: its listeners, and the fan-out to other processes.
#[derive(Default)]
pub struct Changes {
    listeners: RwLock<Vec<Arc<dyn ChangeListener>>>,
    fanout: OnceLock<Arc<dyn ChangeFanout>>,
}

impl Changes {
    /// Adds a cache to keep current.
    pub fn listen(&self, listener: Arc<dyn ChangeListener>) {
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(listener);
    }

    /// Sends every later announcement to the other instances too (set once, at start).
    pub fn fan_out(&self, fanout: Arc<dyn ChangeFanout>) {
        if self.fanout.set(fanout).is_err() {
            tracing::warn!("change fan-out set twice; keeping the first");
        }
    }

    /// Applies `change` here, then tells the other instances.
    pub fn announce(&self, change: Change) {
        self.apply(&change);
        if let Some(fanout) = self.fanout.get() {
            fanout.send(&change);
        }
    }

    /// Applies `change` here only (one another instance announced).
    pub fn apply(&self, change: &Change) {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for listener in listeners.iter() {
            listener.apply(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl ChangeListener for Recorder {
        fn apply(&self, change: &Change) {
            self.0.lock().unwrap().push(change.clone());
        }
    }

    impl ChangeFanout for Recorder {
        fn send(&self, change: &Change) {
            self.0.lock().unwrap().push(change.clone());
        }
    }

    #[test]
    fn announcements_reach_local_listeners_and_the_fanout_but_remote_ones_stay_local() {
        let (local, remote) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let changes = Changes::default();
        changes.listen(local.clone());
        changes.fan_out(remote.clone());
        let id = Uuid::now_v7();
        changes.announce(Change::item("user", id, false));
        changes.apply(&Change::Everything);
        assert_eq!(
            *local.0.lock().unwrap(),
            [Change::item("user", id, false), Change::Everything]
        );
        assert_eq!(*remote.0.lock().unwrap(), [Change::item("user", id, false)]);
    }

    #[test]
    fn changes_travel_as_tagged_json() {
        let id = Uuid::nil();
        let json = serde_json::to_string(&Change::item("event", id, true)).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"item","of":"event","id":"00000000-0000-0000-0000-000000000000","listed":true}"#
        );
        let read: Change = serde_json::from_str(&json).unwrap();
        assert_eq!(read.of_kind("event"), Some((id, true)));
        assert_eq!(read.of_kind("user"), None);
    }
}
