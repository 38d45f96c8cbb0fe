//! The public route table: which module serves a path prefix. A split gateway proxies by it, so
//! it comes from configuration (`gateway.routes`, by default what the modules declare): a prefix
//! a module gains, or one an operator wants to keep private, needs no new gateway build. More
//! specific prefixes win whatever their order.

/// Prefixes that are never public, whatever the configuration says.
const PRIVATE: &str = "/internal";

/// Which module serves each public path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Longest prefix first, so the most specific match is the first.
    table: Vec<(String, String)>,
}

impl Routes {
    /// Parses `prefix=module` pairs separated by commas.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let entries: Vec<&str> = spec.split(',').collect();
        Self::from_entries(&entries)
    }

    /// Parses `prefix=module` entries; blank ones are skipped.
    pub fn from_entries(entries: &[impl AsRef<str>]) -> Result<Self, String> {
        let mut table: Vec<(String, String)> = Vec::new();
        for entry in entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            let (prefix, module) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not prefix=module"))?;
            let module = module.trim();
            if module.is_empty() {
                return Err(format!("{entry:?}: no module named"));
            }
            let prefix = prefix.trim();
            if !prefix.starts_with('/') {
                return Err(format!("{entry:?}: the prefix must start with /"));
            }
            // Kept without its trailing slash: `/` becomes the empty prefix, matching every path.
            let prefix = prefix.trim_end_matches('/');
            if matches(PRIVATE, prefix) {
                return Err(format!("{entry:?}: {PRIVATE} is never routed"));
            }
            if table.iter().any(|(p, _)| p == prefix) {
                return Err(format!("{entry:?}: the prefix is routed twice"));
            }
            table.push((prefix.to_owned(), module.to_owned()));
        }
        if table.is_empty() {
            return Err("no routes".into());
        }
        table.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Self { table })
    }

    /// The module serving `path`: a prefix matches whole path segments only.
    pub fn module_of(&self, path: &str) -> Option<&str> {
        if matches(PRIVATE, path) {
            return None;
        }
        self.table
            .iter()
            .find(|(prefix, _)| matches(prefix, path))
            .map(|(_, module)| module.as_str())
    }

    /// The modules the table names (the configuration checks each is registered).
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.table.iter().map(|(_, module)| module.as_str())
    }
}

/// `gateway.routes`: a list (or a comma-separated string) of `prefix=module` entries.
impl<'de> serde::Deserialize<'de> for Routes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = crate::platform::settings::list(deserializer)?;
        Self::from_entries(&entries).map_err(serde::de::Error::custom)
    }
}

/// Whether `path` is `prefix` or lies below it (`/api/events/1`, not `/api/eventsx`).
fn matches(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_prefix_wins_in_any_order() {
        let routes = Routes::parse("/api=users, /api/events/=events").unwrap();
        assert_eq!(routes.module_of("/api/events/1"), Some("events"));
        assert_eq!(routes.module_of("/api/users/me"), Some("users"));
        // A catch-all still never reaches the internal API.
        let everything = Routes::parse("/=users").unwrap();
        assert_eq!(everything.module_of("/anything"), Some("users"));
        assert_eq!(
            everything.module_of("/internal/users/public_profiles"),
            None
        );
    }

    #[test]
    fn malformed_tables_are_refused_with_the_entry() {
        for (spec, complaint) in [
            ("", "no routes"),
            ("/api/events", "is not prefix=module"),
            ("/api/events=", "no module named"),
            ("api/events=events", "must start with /"),
            ("/internal/users=users", "never routed"),
            ("/api/events=events,/api/events/=users", "routed twice"),
        ] {
            let err = Routes::parse(spec).unwrap_err();
            assert!(err.contains(complaint), "{spec:?}: {err}");
        }
    }
}
