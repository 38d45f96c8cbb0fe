//! Every public route pattern with the methods it serves, read from the OpenAPI document (the
//! contract) plus the operations endpoints. It answers two questions no single process's router
//! can answer for the split gateway: which pattern a proxied path is (its metrics label), and
//! whether a path is known but asked with the wrong method (`405` with `Allow`, not `404`).

use std::sync::LazyLock;

use actix_web::{dev::ResourceDef, http::Method};

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
    matcher: ResourceDef,
    methods: Vec<Method>,
}

impl KnownRoute {
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
                KnownRoute {
                    pattern: pattern.clone(),
                    matcher: ResourceDef::new(pattern.as_str()),
                    methods,
                }
            })
            .collect();
        let gets = OPERATIONS.iter().chain(&super::web_app::PATHS);
        routes.extend(gets.map(|pattern| KnownRoute {
            pattern: (*pattern).to_owned(),
            matcher: ResourceDef::new(*pattern),
            methods: vec![Method::GET],
        }));
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
        self.0.iter().find(|route| route.matcher.is_match(path))
    }
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
}
