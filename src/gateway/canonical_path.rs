//! Edges judged once: before any policy looks at a request (metrics labels, CORS, the rate limit,
//! routing, the split gateway's proxy), its path is percent-decoded, its dot segments resolved
//! and its slashes merged, and the request carries that canonical path from then on. A policy
//! that matched the raw path while the router matched the decoded one could be walked around by
//! spelling a path differently (`/api/%61uth/login`); one that the proxy forwarded undecoded
//! could reach what the upstream decodes (`/.well-known/../internal/...`).
//!
//! `HEAD` is served as `GET` here too: the HTTP layer sends no body to a `HEAD` request, and every
//! route then answers both without declaring `HEAD` itself.

use std::borrow::Cow;

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, Uri, uri::PathAndQuery},
    middleware::Next,
};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::platform::problem::Problem;

/// Marks a request that arrived as `HEAD` and is served as `GET`, so metrics still name it.
#[derive(Debug, Clone, Copy)]
pub struct ArrivedAsHead;

/// Why a path has no canonical form; every case is the client's `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not valid percent-encoded UTF-8")]
    NotUtf8,
    #[error("the path contains a control character")]
    ControlCharacter,
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// Read as it is, a parameter would change meaning: every decoder replaces the bytes with
    /// U+FFFD, so `q=%FF` would search for nothing and a Latin-1 `sp%E4ti` for something else.
    #[error("the query string is not valid percent-encoded UTF-8")]
    QueryNotUtf8,
}

/// Characters kept encoded when the canonical path is written back: everything that is not a
/// path character of RFC 3986 (`pchar`), so the router decodes each segment to what we decoded.
const NOT_PCHAR: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The canonical spelling of `raw`: decoded once (an encoded `/` or `\` separates segments like
/// the character itself), `.` and empty segments dropped, `..` resolved, then re-encoded. A
/// trailing slash is kept, since `/api/events/` and `/api/events` are different paths.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plainly_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(|c| c.is_ascii_control()) {
        return Err(PathError::ControlCharacter);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            segment => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.extend(utf8_percent_encode(segment, NOT_PCHAR));
    }
    let ends_in_directory =
        decoded.ends_with(['/', '\\']) || decoded.ends_with("/.") || decoded.ends_with("/..");
    if path.is_empty() || (ends_in_directory && !segments.is_empty()) {
        path.push('/');
    }
    Ok(if path == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(path)
    })
}

/// Whether every name and value of `query` decodes to UTF-8. Decoding it whole answers the same:
/// the separators are ASCII, which neither completes nor continues a multi-byte sequence.
pub fn check_query(query: &str) -> Result<(), PathError> {
    if !query.contains('%') {
        return Ok(()); // a URI holds only ASCII: what is not encoded is UTF-8
    }
    percent_decode_str(query)
        .decode_utf8()
        .map(drop)
        .map_err(|_| PathError::QueryNotUtf8)
}

/// The common case, decided without allocating: nothing encoded, no backslash, no empty, `.` or
/// `..` segment, only path characters. Such a path is its own canonical form.
fn is_plainly_canonical(raw: &str) -> bool {
    let plain_bytes = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b));
    plain_bytes
        && raw
            .split('/')
            .skip(1)
            .enumerate()
            .all(|(i, segment)| match segment {
                // An empty segment is fine only as the last one (a trailing slash), and `/` itself.
                "" => i == raw.split('/').count() - 2,
                "." | ".." => false,
                _ => true,
            })
}

/// Rewrites the request to its canonical path (and `HEAD` to `GET`) before anything else sees
/// it; a path without a canonical form, or a query string that is not UTF-8, is refused with
/// `400`.
pub async fn canonicalize_request(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let canonical = match check_query(req.query_string()).and_then(|()| canonical_path(req.path()))
    {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(path)) => Some(path),
        Err(err) => {
            let response = Problem::bad_request(err.to_string()).error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    };
    if let Some(path) = canonical {
        let uri = with_path(req.uri(), &path);
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(ArrivedAsHead);
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// `uri` with its path replaced, query kept.
fn with_path(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    // A canonical path is made of pchars and '/', so it always parses.
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_path_has_one_canonical_form() {
        for (raw, canonical) in [
            ("/api/auth/login", "/api/auth/login"),
            ("/api/%61uth/login", "/api/auth/login"),
            ("/%61pi/auth/login", "/api/auth/login"),
            ("/api/aut%68/register", "/api/auth/register"),
            ("/API/auth/login", "/API/auth/login"),
            ("/api//auth///login", "/api/auth/login"),
            ("/api/./auth/login", "/api/auth/login"),
            ("/api/x/../auth/login", "/api/auth/login"),
            ("/api/x/%2e%2e/auth/login", "/api/auth/login"),
            ("/api/x/%2E%2E/auth/login", "/api/auth/login"),
            ("/api%2fauth%2Flogin", "/api/auth/login"),
            ("/api\\auth\\login", "/api/auth/login"),
            ("/api%5cauth/login", "/api/auth/login"),
            (
                "/.well-known/../internal/users/public_profiles",
                "/internal/users/public_profiles",
            ),
            ("/api/events/", "/api/events/"),
            ("/api/events/.", "/api/events/"),
            ("/api/events/x/..", "/api/events/"),
            ("/", "/"),
            ("//", "/"),
            ("/a%20b", "/a%20b"),
            ("/a b", "/a%20b"),
            ("/a%3Fb", "/a%3Fb"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), Ok(canonical), "{raw}");
        }
    }

    #[test]
    fn paths_without_a_canonical_form_are_refused() {
        for (raw, err) in [
            ("/..", PathError::AboveRoot),
            ("/api/../../internal", PathError::AboveRoot),
            ("/%2e%2e/internal", PathError::AboveRoot),
            ("/api/%00", PathError::ControlCharacter),
            ("/api/%0a", PathError::ControlCharacter),
            ("/api/%7F", PathError::ControlCharacter),
            ("/api/%ff", PathError::NotUtf8),
            ("api", PathError::NotAbsolute),
        ] {
            assert_eq!(canonical_path(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn a_query_string_must_decode_to_utf8_in_every_part() {
        for fine in [
            "",
            "q=ber",
            "q=sp%C3%A4ti&limit=2",
            "q=%E2%82%AC+x",
            "%C3%A4=1",
            "q=100%25",
        ] {
            assert_eq!(check_query(fine), Ok(()), "{fine}");
        }
        for broken in [
            "q=%FF",
            "q=sp%E4ti",
            "%FF=1",
            "q=%C3",
            "q=%C3&x=%A4",
            "q=%ED%A0%80", // a UTF-16 surrogate, not a character
            "q=%C0%AF",    // an overlong '/'
            "limit=2&location=%80",
        ] {
            assert_eq!(
                check_query(broken),
                Err(PathError::QueryNotUtf8),
                "{broken}"
            );
        }
    }

    #[test]
    fn a_canonical_path_is_its_own_canonical_form() {
        for raw in ["/api/events/1", "/a%20b", "/caf%C3%A9", "/api/events/", "/"] {
            assert!(matches!(canonical_path(raw), Ok(Cow::Borrowed(_))), "{raw}");
        }
    }

    /// The allocation-free check agrees with the full one on every path it accepts.
    #[test]
    fn the_fast_path_only_accepts_what_is_already_canonical() {
        for raw in [
            "/",
            "/api/events",
            "/api/events/",
            "/api/events/0193-x/registrations/me",
            "/.well-known/jwks.json",
            "/a.b/c..d",
            "/api//events",
            "/api/./x",
            "/api/../x",
            "/x/.",
            "/x/..",
            "/%61",
            "/a\\b",
            "/a b",
            "/café",
            "//",
            "/a//",
        ] {
            if is_plainly_canonical(raw) {
                assert_eq!(canonical_path_slow(raw).as_deref(), Ok(raw), "{raw}");
            }
        }
        assert!(is_plainly_canonical("/api/events/"));
        assert!(is_plainly_canonical("/.well-known/jwks.json"));
        for not_plain in ["/api//events", "/api/./x", "/x/..", "/%61", "//", "/a//"] {
            assert!(!is_plainly_canonical(not_plain), "{not_plain}");
        }
    }

    /// `canonical_path` made to take its full path: a leading encoded `.` segment, which the
    /// fast path refuses and resolution drops.
    fn canonical_path_slow(raw: &str) -> Result<String, PathError> {
        canonical_path(&format!("/%2E{raw}")).map(Cow::into_owned)
    }
}
