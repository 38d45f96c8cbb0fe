//! The web app for people: one HTML shell, one script, one style sheet, compiled into the binary
//! (the one-binary deployment stays one file) and served by whichever process is the public
//! entry. No build step: the script is plain JavaScript the browser runs as written.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's own script and
//! styles (no inline script, nothing from elsewhere), so even user text that slipped into markup
//! could not run; the app itself only ever sets user text as text.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use sha2::{Digest, Sha256};

use crate::platform::compression::Encodings;

/// The app's files: path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_str!("web/app.css"),
    ),
    (
        "/assets/icon.svg",
        "image/svg+xml",
        include_str!("web/icon.svg"),
    ),
];

/// The paths the app serves (known routes: `HEAD` works, other methods are `405`).
pub const PATHS: [&str; 4] = [FILES[0].0, FILES[1].0, FILES[2].0, FILES[3].0];

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Each file's body, kept with its compressed forms (made when first asked for).
static BODIES: LazyLock<Vec<Arc<Encodings>>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, body)| Encodings::fixed(body.as_bytes()))
        .collect()
});

/// Each file's validator, computed once: weak (`W/"…"`), since the same file goes out in
/// several codings, and a `304` carries the very validator the `200` did.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, body)| format!("{:x}", Sha256::digest(body.as_bytes())))
        .map(|hash| format!("W/\"{}\"", &hash[..16]))
        .collect()
});

pub fn routes(cfg: &mut web::ServiceConfig) {
    for (index, (path, ..)) in FILES.iter().enumerate() {
        cfg.route(
            path,
            web::get().to(move |req: HttpRequest| serve(req, index)),
        );
    }
}

/// Revalidated on every use (`no-cache`): an upgraded binary's app is picked up at once, and an
/// unchanged file costs a `304`.
async fn serve(req: HttpRequest, index: usize) -> HttpResponse {
    let (_, content_type, _) = FILES[index];
    let etag = &ETAGS[index];
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        // `If-None-Match` compares weakly (RFC 9110 §13.1.2): `W/` or not, the tag is the tag.
        .is_some_and(|tags| {
            let opaque = |tag: &str| {
                tag.trim()
                    .strip_prefix("W/")
                    .unwrap_or(tag.trim())
                    .to_owned()
            };
            tags.split(',')
                .any(|t| t.trim() == "*" || opaque(t) == opaque(etag))
        });
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if unchanged {
        response.finish()
    } else {
        BODIES[index].respond(&mut response)
    }
}
