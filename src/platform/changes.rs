//! Announcements of what a write changed, so that every read cache holding it drops it. A
//! module announces after its transaction committed and before it answers: the change is
//! applied to this process's caches at once (a client reads its own write), then handed to the
//! fan-out (split build: NATS core) for the other instances, which apply it within milliseconds.
//! A lost announcement is bounded by the caches' TTL.
//!
//! A cache in front of a module (the split gateway's, which keeps answers it relayed) learns
//! what an answer depends on from its [`CacheTags`], and what a write changed from the changes
//! [`noting`] collected while the request ran: it drops what they name before the write's
//! answer reaches the client, as a module's own caches do.

use std::{
    cell::RefCell,
    fmt,
    sync::{Arc, OnceLock, RwLock},
};

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

/// What a cached answer depends on, in the terms [`Change`]s are announced in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tag {
    /// One item (`event:<id>`): stale after any change of it.
    Item { of: String, id: Uuid },
    /// Which items of a kind lists hold (`event:lists`): stale after a `listed` change.
    Lists { of: String },
    /// Every item of a kind (`user:*`), for an answer that shows many of them (organisers'
    /// names): stale after any change of that kind.
    AnyItem { of: String },
}

impl Tag {
    /// Item `id` of kind `of`.
    pub fn item(of: &str, id: Uuid) -> Self {
        Self::Item {
            of: of.to_owned(),
            id,
        }
    }

    /// The lists of kind `of`.
    pub fn lists(of: &str) -> Self {
        Self::Lists { of: of.to_owned() }
    }

    /// Any item of kind `of`.
    pub fn any_item(of: &str) -> Self {
        Self::AnyItem { of: of.to_owned() }
    }

    /// Reads a tag as [`fmt::Display`] writes it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (of, what) = text.split_once(':')?;
        if of.is_empty() || !of.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        Some(match what {
            "lists" => Self::lists(of),
            "*" => Self::any_item(of),
            id => Self::item(of, Uuid::try_parse(id).ok()?),
        })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Item { of, id } => write!(f, "{of}:{id}"),
            Self::Lists { of } => write!(f, "{of}:lists"),
            Self::AnyItem { of } => write!(f, "{of}:*"),
        }
    }
}

impl Change {
    /// The tags this change makes stale; `None` for [`Change::Everything`] (all of them).
    pub fn stales(&self) -> Option<Vec<Tag>> {
        match self {
            Self::Item { of, id, listed } => {
                let mut tags = vec![Tag::item(of, *id), Tag::any_item(of)];
                if *listed {
                    tags.push(Tag::lists(of));
                }
                Some(tags)
            }
            Self::Everything => None,
        }
    }
}

/// Attached to an answer (a response extension) that is the same for every caller and may be
/// kept until a change of what it names: what a cache in front of the module needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTags(pub Vec<Tag>);

tokio::task_local! {
    /// The changes announced while the request on this task runs, when something asked.
    static NOTED: RefCell<Vec<Change>>;
}

/// Runs `request`, returning with its output the changes announced on its task meanwhile (and
/// those [`note`]d for it): what a service tells the gateway in front of it.
pub async fn noting<F: std::future::Future>(request: F) -> (F::Output, Vec<Change>) {
    NOTED
        .scope(RefCell::new(Vec::new()), async {
            let output = request.await;
            (output, NOTED.with(RefCell::take))
        })
        .await
}

/// Notes `change` for the request running on this task, if [`noting`]: for an announcement made
/// on another thread or task that this request waited for.
pub fn note(change: &Change) {
    let _ = NOTED.try_with(|noted| {
        let mut noted = noted.borrow_mut();
        if !noted.contains(change) {
            noted.push(change.clone());
        }
    });
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

    /// Applies `change` here, then tells the other instances (and the request being answered,
    /// see [`noting`]).
    pub fn announce(&self, change: Change) {
        self.apply(&change);
        note(&change);
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
    fn tags_read_back_as_written_and_name_what_a_change_stales() {
        let id = Uuid::now_v7();
        for tag in [
            Tag::item("event", id),
            Tag::lists("event"),
            Tag::any_item("user"),
        ] {
            assert_eq!(Tag::parse(&tag.to_string()), Some(tag));
        }
        for text in [
            "event",
            "event:",
            ":lists",
            "Event:lists",
            "event:12",
            "ev ent:*",
        ] {
            assert_eq!(Tag::parse(text), None, "{text}");
        }
        assert_eq!(
            Change::item("event", id, false).stales(),
            Some(vec![Tag::item("event", id), Tag::any_item("event")])
        );
        assert!(
            Change::item("event", id, true)
                .stales()
                .unwrap()
                .contains(&Tag::lists("event"))
        );
        assert_eq!(Change::Everything.stales(), None);
    }

    #[tokio::test]
    async fn a_request_learns_what_was_announced_while_it_ran_and_only_that() {
        let changes = Changes::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        changes.announce(Change::item("event", a, false));
        let ((), noted) = noting(async {
            changes.announce(Change::item("event", b, true));
            tokio::task::yield_now().await;
            note(&Change::item("event", b, true));
            note(&Change::item("user", a, false));
        })
        .await;
        assert_eq!(
            noted,
            [
                Change::item("event", b, true),
                Change::item("user", a, false)
            ]
        );
        // Outside a request nothing is kept.
        note(&Change::Everything);
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
