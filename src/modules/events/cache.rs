//! The events module's read caches: each event's JSON as the API answers it, which events each
//! list page holds, and the organisers' and attendees' display names. [`Change`]s keep them
//! current (see `platform::changes`); fills are race-free (see `platform::read_cache`).

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use uuid::Uuid;

use super::{EVENT_CHANGES, EventFilter, When, domain::EventId};
use crate::modules::users::PROFILE_CHANGES;
use crate::platform::{
    changes::{Change, ChangeListener},
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
}

impl Weigh for ListedPage {
    fn weight(&self) -> u32 {
        let bytes = 64 + self.ids.len() * 16 + self.next_cursor.as_ref().map_or(0, String::len);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
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
