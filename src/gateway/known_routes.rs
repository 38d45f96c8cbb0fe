//! Every public route pattern with the methods it serves, read from the OpenAPI document (the
//! contract) plus the operations endpoints. It answers two questions no single process's router
//! can answer for the split gateway: which pattern a proxied path is (its metrics label), and
//! whether a path is known but asked with the wrong method (`405` with `Allow`, not `404`).
//!
//! Every request is looked up here (its metrics label, its span name), so patterns are matched
//! segment by segment rather than by actix's regular expressions: the regex engine was an eighth
//! of the split gateway's CPU before.

use std::{borrow::Cow, sync::LazyLock};

use actix_web::{HttpMessage, HttpRequest, http::Method};

use super::openapi::openapi_document;

/// The gateway's own GET endpoints, outside the modules' OpenAPI paths (and the web app's
/// files, [`super::web_app::PATHS`]).
pub const OPERATIONS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/openapi.json",
    "/api/docs",
];

/// One route pattern and the methods it serves.
pub struct KnownRoute {
    pattern: String,
    segments: Vec<Segment>,
    methods: Vec<Method>,
}

/// One `/`-separated piece of a pattern: literal text, or a parameter (`{id}`, any non-empty
/// text without `/`) between a literal prefix and suffix (`{secret}.ics`).
#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Parameter { prefix: String, suffix: String },
}

impl Segment {
    fn parse(text: &str) -> Self {
        match (text.find('{'), text.rfind('}')) {
            (Some(open), Some(close)) if open < close => Segment::Parameter {
                prefix: text[..open].to_owned(),
                suffix: text[close + 1..].to_owned(),
            },
            _ => Segment::Literal(text.to_owned()),
        }
    }

    fn matches(&self, piece: &str) -> bool {
        match self {
            Segment::Literal(text) => piece == text,
            Segment::Parameter { prefix, suffix } => {
                piece.len() > prefix.len() + suffix.len()
                    && piece.starts_with(prefix.as_str())
                    && piece.ends_with(suffix.as_str())
            }
        }
    }
}

impl KnownRoute {
    fn new(pattern: &str, methods: Vec<Method>) -> Self {
        Self {
            pattern: pattern.to_owned(),
            segments: pattern.split('/').skip(1).map(Segment::parse).collect(),
            methods,
        }
    }

    /// Whether a canonical path is an instance of this pattern.
    fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut pieces = rest.split('/');
        self.segments
            .iter()
            .all(|segment| pieces.next().is_some_and(|piece| segment.matches(piece)))
            && pieces.next().is_none()
    }

    /// The pattern as metrics label it (`/api/events/{id}`).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `method` is served; `HEAD` is wherever `GET` is.
    pub fn allows(&self, method: &Method) -> bool {
        let asked = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.methods.contains(asked)
    }

    /// The `Allow` header's value.
    pub fn allow_header(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if self.methods.contains(&Method::GET) {
            names.insert(1.min(names.len()), "HEAD");
        }
        names.join(", ")
    }
}

/// The table; static patterns are tried before patterns with parameters, so `/api/users/me`
/// wins over `/api/users/{id}`.
pub struct KnownRoutes(Vec<KnownRoute>);

impl KnownRoutes {
    fn from_contract() -> Self {
        let doc = openapi_document();
        let mut routes: Vec<KnownRoute> = doc
            .paths
            .paths
            .iter()
            .map(|(pattern, item)| {
                let methods = [
                    (Method::GET, item.get.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, served)| served.then_some(method))
                .collect();
                KnownRoute::new(pattern, methods)
            })
            .collect();
        let gets = OPERATIONS.iter().chain(&super::web_app::PATHS);
        routes.extend(gets.map(|pattern| KnownRoute::new(pattern, vec![Method::GET])));
        routes.sort_by_key(|route| route.pattern.matches('{').count());
        Self(routes)
    }

    /// The contract's table, built once per process.
    pub fn get() -> &'static Self {
        static ROUTES: LazyLock<KnownRoutes> = LazyLock::new(KnownRoutes::from_contract);
        &ROUTES
    }

    /// The route a canonical path belongs to, whatever the method.
    pub fn find(&self, path: &str) -> Option<&KnownRoute> {
        self.0.iter().find(|route| route.matches(path))
    }

    /// The route of a request, looked up once per request (the fallback, the metrics and the
    /// access log all ask). Only asked once the path is canonical.
    pub fn of(req: &HttpRequest) -> Option<&'static KnownRoute> {
        #[derive(Clone, Copy)]
        struct Found(Option<&'static KnownRoute>);
        if let Some(found) = req.extensions().get::<Found>() {
            return found.0;
        }
        let found = Self::get().find(req.path());
        req.extensions_mut().insert(Found(found));
        found
    }
}

/// The label a request is counted and named by: the contract's pattern of its path, else the
/// local route it matched (the internal endpoints), never the path itself.
pub fn route_label(req: &HttpRequest) -> Option<Cow<'static, str>> {
    #[derive(Clone)]
    struct Label(Option<Cow<'static, str>>);
    if let Some(label) = req.extensions().get::<Label>() {
        return label.0.clone();
    }
    let label = match KnownRoutes::of(req) {
        Some(route) => Some(Cow::Borrowed(route.pattern())),
        None => req.match_pattern().map(Cow::Owned),
    };
    req.extensions_mut().insert(Label(label.clone()));
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_pattern_and_methods() {
        let routes = KnownRoutes::get();
        let me = routes.find("/api/users/me").unwrap();
        assert_eq!(me.pattern(), "/api/users/me");
        assert!(me.allows(&Method::PATCH) && me.allows(&Method::HEAD));
        assert!(!me.allows(&Method::PUT));
        assert_eq!(me.allow_header(), "GET, HEAD, PATCH, DELETE");
        let event = routes.find("/api/events/0193").unwrap();
        assert_eq!(event.pattern(), "/api/events/{id}");
        let register = routes.find("/api/auth/register").unwrap();
        assert_eq!(register.allow_header(), "POST");
        assert!(!register.allows(&Method::HEAD));
        assert_eq!(routes.find("/healthz").unwrap().allow_header(), "GET, HEAD");
        assert!(routes.find("/api/events/1/unknown").is_none());
        assert!(routes.find("/internal/users/public_profiles").is_none());
    }

    /// The segment matcher agrees with actix's own (regex) matching of the same patterns, on
    /// every pattern of the table and paths of every kind around them.
    #[test]
    fn segments_match_what_actix_matches() {
        use actix_web::dev::ResourceDef;
        let pieces = [
            "",
            "x",
            "me",
            "events",
            "a.ics",
            ".ics",
            "calendar.ics",
            "%2F",
            "é",
        ];
        for route in &KnownRoutes::get().0 {
            let actix = ResourceDef::new(route.pattern());
            let mut paths = vec![route.pattern().to_owned(), format!("{}/", route.pattern())];
            for piece in pieces {
                let filled: Vec<String> = route
                    .pattern()
                    .split('/')
                    .map(|segment| match Segment::parse(segment) {
                        Segment::Literal(text) => text,
                        Segment::Parameter { prefix, suffix } => format!("{prefix}{piece}{suffix}"),
                    })
                    .collect();
                paths.push(filled.join("/"));
                paths.push(format!("{}/{piece}", route.pattern()));
                paths.push(format!("{}{piece}", route.pattern()));
            }
            for path in &paths {
                assert_eq!(
                    route.matches(path),
                    actix.is_match(path),
                    "{} on {path}",
                    route.pattern()
                );
            }
        }
        assert!(KnownRoutes::get().find("/api/calendar/.ics").is_none());
        assert_eq!(
            KnownRoutes::get()
                .find("/api/calendar/s3cret.ics")
                .unwrap()
                .pattern(),
            "/api/calendar/{secret}.ics"
        );
    }
}
