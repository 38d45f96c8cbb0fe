//! Keyset pagination: `?limit=` and an opaque `?cursor=` naming the last row of the previous
//! page by its sort key, so pages never skip or repeat rows while data changes.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::problem::Problem;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest `limit` accepted.
pub const MAX_LIMIT: i64 = 100;

/// A page of items and the cursor of the next page (`null` on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The position after which a page starts: a sort timestamp and the row id that breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// The opaque text a client sends back as `cursor`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    /// A cursor this server issued, or `400`.
    pub fn decode(raw: &str) -> Result<Self, Problem> {
        let invalid = || Problem::bad_request("cursor is not one this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        // Every time the server sorts by is an RFC 3339 time, years 1 to 9999; a cursor beyond
        // them was not issued here, and PostgreSQL would refuse some of them outright.
        if !(1..=9999).contains(&at.year()) {
            return Err(invalid());
        }
        Ok(Self {
            at,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// `limit` and `cursor` as every list endpoint accepts them.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1..100, default 20.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageQuery {
    /// The page request, or `400` for a limit out of range or a cursor not issued here.
    pub fn validate(&self) -> Result<PageRequest, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let after = self.cursor.as_deref().map(Cursor::decode).transpose()?;
        Ok(PageRequest { limit, after })
    }
}

/// Builds a page from rows fetched with `limit + 1`: the extra row only says another page exists.
pub fn into_page<R, T>(
    mut rows: Vec<R>,
    request: PageRequest,
    key: impl Fn(&R) -> Cursor,
    map: impl FnMut(R) -> T,
) -> Page<T> {
    let more = rows.len() as i64 > request.limit;
    rows.truncate(request.limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| key(r).encode())
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(map).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert_eq!(
            Cursor::decode("not-a-cursor").unwrap_err().status.as_u16(),
            400
        );
    }

    #[test]
    fn limits_are_bounded() {
        let q = |limit| {
            PageQuery {
                limit: Some(limit),
                cursor: None,
            }
            .validate()
        };
        assert!(q(0).is_err());
        assert!(q(101).is_err());
        assert_eq!(q(100).unwrap().limit, 100);
        assert_eq!(PageQuery::default().validate().unwrap().limit, 20);
    }

    #[test]
    fn an_extra_row_yields_a_cursor() {
        let req = PageRequest {
            limit: 2,
            after: None,
        };
        let at = Utc::now();
        let rows: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let page = into_page(rows.clone(), req, |id| Cursor { at, id: *id }, |id| id);
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            Cursor::decode(page.next_cursor.as_ref().unwrap())
                .unwrap()
                .id,
            rows[1]
        );
        let page = into_page(
            rows[..2].to_vec(),
            req,
            |id| Cursor { at, id: *id },
            |id| id,
        );
        assert!(page.next_cursor.is_none());
    }
}
