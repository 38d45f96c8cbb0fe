//! The events module's read caches: each event's JSON as the API answers it, which events each
//! list page holds, and the organisers' and attendees' display names. [`Change`]s keep them
//! current (see `platform::changes`); fills are race-free (see `platform::read_cache`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use uuid::Uuid;

use super::{EVENT_CHANGES, EventFilter, When, domain::EventId};
use crate::modules::users::PROFILE_CHANGES;
use crate::platform::{
    changes::{Change, ChangeListener},
    compression::Encodings,
    ids::UserId,
    pagination::PageRequest,
    read_cache::{CacheMetrics, CacheSettings, ReadCache, Weigh},
};

/// A list query: the filters and the page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    pub filter: EventFilter,
    pub page: PageRequest,
    /// For lists relative to now (`when`), the ten seconds they were read in: an event that
    /// started leaves "upcoming" within ten seconds though nothing announced it.
    pub moment: i64,
}

impl ListKey {
    /// The key of `page` of the events matching `filter`, read now.
    pub fn new(filter: EventFilter, page: PageRequest) -> Self {
        let moment = match filter.when {
            When::All => 0,
            When::Upcoming | When::Past => crate::platform::now().timestamp() / 10,
        };
        Self {
            filter,
            page,
            moment,
        }
    }
}

/// The events one list page holds, in order, and the cursor of the next page.
#[derive(Debug)]
pub struct ListedPage {
    pub ids: Vec<EventId>,
    pub next_cursor: Option<String>,
    /// The page's JSON (and its compressed forms) as last answered, with the events' JSON it was
    /// made of.
    body: Mutex<Option<(Vec<Bytes>, Arc<Encodings>)>>,
}

impl ListedPage {
    pub fn new(ids: Vec<EventId>, next_cursor: Option<String>) -> Self {
        Self {
            ids,
            next_cursor,
            body: Mutex::new(None),
        }
    }

    /// The page made of `items` (its events' JSON, in order): the one answered last when they are
    /// the very same cached bodies, so it is neither put together nor compressed again until one
    /// of its events changes. (The kept bodies are held here, so their memory can not be reused
    /// for another body while compared.)
    pub fn body(&self, items: Vec<Bytes>) -> Arc<Encodings> {
        let mut kept = self
            .body
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((made_of, body)) = kept.as_ref()
            && made_of.len() == items.len()
            && made_of
                .iter()
                .zip(&items)
                .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len())
        {
            return Arc::clone(body);
        }
        let body = Encodings::kept(page_json(
            items.iter().cloned(),
            self.next_cursor.as_deref(),
        ));
        *kept = Some((items, Arc::clone(&body)));
        body
    }
}

impl Weigh for ListedPage {
    fn weight(&self) -> u32 {
        // The ids, and the page kept (weighed when it is filled, before any client asked for a
        // compressed form: counted as half the page more, and the events' bodies it holds on
        // to once they change, as much again).
        let kept = self
            .body
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map_or(0, |(_, body)| {
                body.size().max(body.identity().len() * 5 / 2)
            });
        let bytes =
            64 + self.ids.len() * 16 + self.next_cursor.as_ref().map_or(0, String::len) + kept;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// A page's JSON from its items' JSON: the shape of [`crate::platform::pagination::Page`].
fn page_json(items: impl Iterator<Item = Bytes>, next_cursor: Option<&str>) -> Bytes {
    let mut json = Vec::with_capacity(4096);
    json.extend_from_slice(b"{\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(&item);
    }
    json.extend_from_slice(b"],\"next_cursor\":");
    serde_json::to_writer(&mut json, &next_cursor).expect("a cursor always serializes");
    json.push(b'}');
    Bytes::from(json)
}

/// The attendee pages of one event read so far, with its organiser (who, with admins, may see
/// them; an event's organiser never changes).
#[derive(Debug)]
pub struct AttendeePages {
    pub organizer: UserId,
    pub pages: HashMap<PageRequest, Bytes>,
}

impl Weigh for AttendeePages {
    fn weight(&self) -> u32 {
        let bytes: usize = 64 + self.pages.values().map(|p| 48 + p.len()).sum::<usize>();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// A display name as the users module gave it; `None` for an account that does not exist.
#[derive(Debug, Clone)]
pub struct CachedName(pub Option<Arc<str>>);

impl Weigh for CachedName {
    fn weight(&self) -> u32 {
        u32::try_from(48 + self.0.as_ref().map_or(0, |name| name.len())).unwrap_or(u32::MAX)
    }
}

/// The caches, kept current by [`Change`]s.
pub struct EventCaches {
    /// Event id → the event's JSON, organiser's name included.
    pub details: ReadCache<EventId, Bytes>,
    /// List query → the ids on that page (their JSON comes from `details`).
    pub lists: ReadCache<ListKey, Arc<ListedPage>>,
    /// User id → display name.
    pub names: ReadCache<Uuid, CachedName>,
    /// Event id → its attendee pages' JSON (names included).
    pub attendees: ReadCache<EventId, Arc<AttendeePages>>,
}

impl EventCaches {
    /// Empty caches.
    pub fn new(settings: &CacheSettings, metrics: &CacheMetrics) -> Self {
        Self {
            details: ReadCache::new("event_details", settings, metrics),
            lists: ReadCache::new("event_lists", settings, metrics),
            names: ReadCache::new("user_names", settings, metrics),
            attendees: ReadCache::new("event_attendees", settings, metrics),
        }
    }
}

impl ChangeListener for EventCaches {
    fn apply(&self, change: &Change) {
        if let Some((id, listed)) = change.of_kind(EVENT_CHANGES) {
            self.details.invalidate(&id.into());
            self.attendees.invalidate(&id.into());
            if listed {
                self.lists.invalidate_all();
            }
        } else if let Some((id, _)) = change.of_kind(PROFILE_CHANGES) {
            // Every rendered event may show the name (as organiser); renames are rare.
            self.names.invalidate(&id);
            self.details.invalidate_all();
            self.attendees.invalidate_all();
        } else if *change == Change::Everything {
            self.names.invalidate_all();
            self.details.invalidate_all();
            self.lists.invalidate_all();
            self.attendees.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::ListedPage;

    #[test]
    fn a_kept_page_is_answered_again_only_while_made_of_the_very_same_bodies() {
        let page = ListedPage::new(Vec::new(), Some("next".to_owned()));
        let (a, b) = (
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from(b"{\"b\":1}".to_vec()),
        );
        let first = page.body(vec![a.clone(), b.clone()]);
        assert_eq!(
            first.identity(),
            &Bytes::from_static(b"{\"items\":[{\"a\":1},{\"b\":1}],\"next_cursor\":\"next\"}")
        );
        assert!(Arc::ptr_eq(&first, &page.body(vec![a.clone(), b.clone()])));
        // A new body for an event, even an equal one, makes the page again; so does another order.
        let b_again = Bytes::from(b"{\"b\":2}".to_vec());
        let changed = page.body(vec![a.clone(), b_again.clone()]);
        assert!(!Arc::ptr_eq(&first, &changed));
        assert!(
            changed
                .identity()
                .ends_with(b"{\"b\":2}],\"next_cursor\":\"next\"}")
        );
        let reordered = page.body(vec![b_again, a.clone()]);
        assert!(
            reordered
                .identity()
                .starts_with(b"{\"items\":[{\"b\":2},{\"a\":1}]")
        );
        assert!(!page.body(vec![a]).identity().contains(&b'b'));
    }
}
