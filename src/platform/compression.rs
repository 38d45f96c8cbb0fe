//! Compressed answers: a text body (JSON, HTML, JavaScript, CSS, calendars) of at least
//! [`MIN_BYTES`] goes out in `br` or `gzip` when the client accepts one.
//!
//! What a cache keeps is compressed once: a handler that answers with a body it keeps attaches
//! its [`Encodings`] to the response, and each compressed form is made the first time a client
//! asks for it and then served as it is. Anything else is compressed as it leaves, quickly rather
//! than tightly. A client that accepts neither pays a header lookup (and the `Vary` header
//! every text answer carries); a body below `MIN_BYTES` (most single JSON objects) goes out as it is, since compressing it gains nothing.
//! A streamed body (one proxied from a module's own service, which compressed it itself when it
//! should) passes through untouched.

use std::{
    io::Write,
    sync::{Arc, OnceLock},
};

use actix_web::{
    Error,
    body::{BodySize, BoxBody, MessageBody},
    dev::{ResponseHead, ServiceRequest, ServiceResponse},
    http::header::{
        ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue, VARY,
    },
    middleware::Next,
};
use bytes::Bytes;

/// Bodies smaller than this are sent as they are: below about a kilobyte the framing and the
/// compressor's own overhead eat what it saves.
pub const MIN_BYTES: usize = 1024;

/// A content coding the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding to answer a request whose `Accept-Encoding` is `accept` with: `br` when it is
/// accepted at least as much as `gzip`, else `gzip`, else none. `q=0` refuses a coding; `*`
/// stands for the codings not named.
pub fn preferred(accept: &str) -> Option<Coding> {
    preferred_of(std::iter::once(accept))
}

/// [`preferred`] for a request's `Accept-Encoding` lines, read as one list (without joining them:
/// this runs on every request).
fn preferred_of<'a>(lines: impl Iterator<Item = &'a str>) -> Option<Coding> {
    let (mut brotli, mut gzip, mut any) = (None, None, None);
    for item in lines.flat_map(|line| line.split(',')) {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let weight = parts
            .find_map(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
            })
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case("br") {
            brotli = Some(weight);
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight);
        } else if name == "*" {
            any = Some(weight);
        }
    }
    let brotli = brotli.or(any).unwrap_or(0.0);
    let gzip = gzip.or(any).unwrap_or(0.0);
    if brotli > 0.0 && brotli >= gzip {
        Some(Coding::Brotli)
    } else if gzip > 0.0 {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// How hard to compress: tightly for a body that never changes, moderately for one kept until
/// it changes (a list page), quickly on the way out of each response.
#[derive(Debug, Clone, Copy)]
enum Effort {
    Once,
    UntilChanged,
    EachTime,
}

/// `body` in `coding`.
fn compress(coding: Coding, body: &[u8], effort: Effort) -> Bytes {
    let mut out = Vec::with_capacity(body.len() / 3 + 64);
    match coding {
        Coding::Brotli => {
            let quality = match effort {
                Effort::Once => 9,
                Effort::UntilChanged => 5,
                Effort::EachTime => 4,
            };
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
            writer.write_all(body).expect("writing to memory");
            writer.flush().expect("writing to memory");
            writer.into_inner(); // ends the stream
        }
        Coding::Gzip => {
            let level = match effort {
                Effort::Once => flate2::Compression::best(),
                Effort::UntilChanged => flate2::Compression::new(6),
                Effort::EachTime => flate2::Compression::new(4),
            };
            let mut writer = flate2::write::GzEncoder::new(&mut out, level);
            writer.write_all(body).expect("writing to memory");
            writer.finish().expect("writing to memory");
        }
    }
    Bytes::from(out)
}

/// A body that is kept (in a cache, or built into the binary) with its compressed forms, each made
/// the first time a client asks for it. Attach it to the response with [`Encodings::respond`].
#[derive(Debug)]
pub struct Encodings {
    identity: Bytes,
    effort: Effort,
    brotli: OnceLock<Bytes>,
    gzip: OnceLock<Bytes>,
}

impl Encodings {
    /// A body that never changes while the process runs (the web app's files): compressed
    /// tightly, once.
    pub fn fixed(identity: impl Into<Bytes>) -> Arc<Self> {
        Self::with(identity.into(), Effort::Once)
    }

    /// A body kept until it changes (a list page): compressed moderately, so a busy page that
    /// changes often does not cost more than it saves.
    pub fn kept(identity: impl Into<Bytes>) -> Arc<Self> {
        Self::with(identity.into(), Effort::UntilChanged)
    }

    fn with(identity: Bytes, effort: Effort) -> Arc<Self> {
        Arc::new(Self {
            identity,
            effort,
            brotli: OnceLock::new(),
            gzip: OnceLock::new(),
        })
    }

    /// The body as it is.
    pub fn identity(&self) -> &Bytes {
        &self.identity
    }

    /// Bytes held: the body and the compressed forms made so far.
    pub fn size(&self) -> usize {
        self.identity.len()
            + self.brotli.get().map_or(0, Bytes::len)
            + self.gzip.get().map_or(0, Bytes::len)
    }

    /// The body in `coding`, compressed now if no client asked for it before.
    pub fn get(&self, coding: Coding) -> &Bytes {
        let cell = match coding {
            Coding::Brotli => &self.brotli,
            Coding::Gzip => &self.gzip,
        };
        cell.get_or_init(|| compress(coding, &self.identity, self.effort))
    }

    /// `response` answering with this body; the middleware swaps in a compressed form when the
    /// client accepts one.
    pub fn respond(
        self: &Arc<Self>,
        response: &mut actix_web::HttpResponseBuilder,
    ) -> actix_web::HttpResponse {
        let mut response = response.body(self.identity.clone());
        response.extensions_mut().insert(Arc::clone(self));
        response
    }
}

/// Whether a response of this type is text worth compressing (images other than SVG, archives
/// and fonts are compressed already).
fn compressible(head: &ResponseHead) -> bool {
    let Some(kind) = head
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    kind.starts_with("text/")
        || kind.starts_with("application/json")
        || kind.starts_with("application/problem+json")
        || kind.starts_with("application/javascript")
        || kind.starts_with("image/svg+xml")
}

/// The middleware: every process's app runs it outermost but for the request context.
pub async fn compress_responses(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    // Several `Accept-Encoding` lines are one list.
    let coding = preferred_of(
        req.headers()
            .get_all(ACCEPT_ENCODING)
            .filter_map(|v| v.to_str().ok()),
    );
    let response = next.call(req).await?.map_into_boxed_body();
    let kept = coding.and_then(|_| {
        response
            .response()
            .extensions()
            .get::<Arc<Encodings>>()
            .cloned()
    });
    Ok(response.map_body(|head, body| {
        if !compressible(head) || head.headers().contains_key(CONTENT_ENCODING) {
            return body;
        }
        // Caches between here and the client keep one answer per coding (beside whatever else
        // the answer varies by: CORS's `Origin`, say).
        vary_by_encoding(head);
        match coding {
            Some(coding) => encode(head, body, coding, kept),
            None => body,
        }
    }))
}

fn vary_by_encoding(head: &mut ResponseHead) {
    let headers = head.headers_mut();
    let named = headers.get_all(VARY).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|name| {
                matches!(name.trim(), "*") || name.trim().eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !named {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

fn encode(
    head: &mut ResponseHead,
    body: BoxBody,
    coding: Coding,
    kept: Option<Arc<Encodings>>,
) -> BoxBody {
    let compressed = match kept {
        Some(kept) if kept.identity.len() >= MIN_BYTES => kept.get(coding).clone(),
        Some(_) => return body,
        None => {
            if !matches!(body.size(), BodySize::Sized(n) if n >= MIN_BYTES as u64) {
                return body;
            }
            match body.try_into_bytes() {
                Ok(bytes) => compress(coding, &bytes, Effort::EachTime),
                Err(body) => return body, // streamed: passed through as it comes
            }
        }
    };
    let headers = head.headers_mut();
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    headers.remove(CONTENT_LENGTH);
    // The same resource in another coding: its validator is weak (RFC 9110 §8.8.1).
    if let Some(tag) = headers.get(ETAG).and_then(|v| v.to_str().ok())
        && tag.starts_with('"')
        && let Ok(weak) = HeaderValue::from_str(&format!("W/{tag}"))
    {
        headers.insert(ETAG, weak);
    }
    BoxBody::new(compressed)
}

#[cfg(test)]
mod tests {
    use super::{Coding, preferred, preferred_of};

    #[test]
    fn the_client_s_preference_decides_and_q_zero_refuses() {
        for (accept, expected) in [
            ("gzip, deflate, br", Some(Coding::Brotli)),
            ("gzip", Some(Coding::Gzip)),
            ("GZIP", Some(Coding::Gzip)),
            ("br;q=0.5, gzip", Some(Coding::Gzip)),
            ("br;q=0, gzip;q=0", None),
            ("br;q=0", None),
            ("*", Some(Coding::Brotli)),
            ("*;q=0.1, gzip;q=0.5", Some(Coding::Gzip)),
            ("identity", None),
            ("deflate, zstd", None),
            ("", None),
            ("br;q=nonsense, gzip", Some(Coding::Gzip)),
            ("x-gzip", Some(Coding::Gzip)),
        ] {
            assert_eq!(preferred(accept), expected, "{accept}");
        }
        // Two lines are one list.
        assert_eq!(
            preferred_of(["br;q=0.1", "gzip;q=0.9"].into_iter()),
            Some(Coding::Gzip)
        );
    }
}
