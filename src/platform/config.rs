//! Layered configuration: built-in defaults, `config/default.toml`, the file named by
//! `RSVP_CONFIG`, then `RSVP__SECTION__KEY` environment variables.

use std::{net::SocketAddr, path::PathBuf};

use config::{Config, Environment, File};
use serde::Deserialize;

/// Every setting of every process, grouped by the section names operators see.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
    pub log: LogSettings,
    pub outbox: OutboxSettings,
    pub topology: TopologySettings,
    pub upstreams: UpstreamSettings,
    pub service: ServiceSettings,
    pub nats: NatsSettings,
}

/// Which modules this process hosts (split build). The monolith hosts both, always.
#[derive(Debug, Clone, Deserialize)]
pub struct TopologySettings {
    /// Comma-separated: `users`, `events`, both, or empty for a pure gateway.
    pub local_modules: String,
    /// Whether this process is the public entry, proxying routes of modules it does not host.
    pub proxy: bool,
}

/// Instances of each remote module (comma-separated base URLs), for the proxy and the clients.
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    pub users: String,
    pub events: String,
    /// Where remote callers reach the users module's internal API (default: `users`).
    pub users_internal: String,
    pub health_interval_ms: u64,
    /// Requests the split gateway sends one instance at once; more wait for a turn.
    pub max_in_flight: usize,
}

/// Service-to-service calls (split build).
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSettings {
    /// Shared secret internal endpoints require in `X-Service-Credential`.
    pub credential: String,
    /// Extra listener for internal endpoints when this process is also the public entry.
    pub internal_bind: String,
    pub call_timeout_ms: u64,
    pub retries: u32,
    /// Consecutive failures that open the circuit, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NatsSettings {
    pub url: String,
    pub stream: String,
    /// Subjects are `<prefix>.<topic>`; streams of different deployments must not overlap.
    pub subject_prefix: String,
    /// Durable consumer name; instances of one service share it and split the work.
    pub consumer: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address the public (gateway) listener binds; port 0 picks a free one.
    pub bind: String,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long a client may take to send a request's headers (then `408`).
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body, from the request's start (then
    /// `408`).
    pub body_timeout_ms: u64,
}

impl ServerSettings {
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub bcrypt_cost: u32,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// PKCS#8 PEM file with the Ed25519 signing key; generated (mode 0600) when missing.
    pub signing_key_path: PathBuf,
    /// Comma-separated PEM files of former signing keys: published for verification only.
    pub retired_signing_key_paths: String,
    pub issuer: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// Requests per minute per client IP on `/api/auth/*`; 0 turns the limit off.
    pub auth_rate_per_minute: u32,
    pub body_limit_bytes: usize,
    /// Comma-separated allowed origins for CORS; empty disables CORS, `*` allows any.
    pub cors_allowed_origins: String,
    /// Comma-separated addresses/CIDRs of the proxies in front of the gateway whose
    /// `X-Forwarded-For`/`-Proto` are believed; empty = the gateway is the edge.
    pub trusted_proxies: String,
    /// Redis shared by the gateway's instances for the auth rate limit; empty = count alone.
    pub rate_limit_redis_url: String,
    /// Split build: comma-separated `prefix=module` pairs the gateway proxies by.
    pub routes: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `rsvp=debug,actix_web=info`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    /// Whether this process relays its outbox; off only for instances that must not publish.
    pub relay_enabled: bool,
    /// How often the relay looks for rows it was not woken for (after a crash or a failure).
    pub poll_interval_ms: u64,
}

/// A configuration that can not be used, with the offending key in the message.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

const DEFAULTS: &[(&str, &str)] = &[
    ("server.bind", "127.0.0.1:8000"),
    ("server.workers", "0"),
    ("server.header_timeout_ms", "5000"),
    ("server.body_timeout_ms", "10000"),
    ("database.url", "sqlite://data/rsvp.db"),
    ("database.max_connections", "10"),
    ("database.connect_timeout_secs", "5"),
    ("auth.bcrypt_cost", "12"),
    ("auth.access_ttl_secs", "900"),
    ("auth.refresh_ttl_secs", "2592000"),
    ("auth.signing_key_path", "data/signing_key.pem"),
    ("auth.retired_signing_key_paths", ""),
    ("auth.issuer", "rsvp"),
    ("gateway.auth_rate_per_minute", "30"),
    ("gateway.body_limit_bytes", "65536"),
    ("gateway.cors_allowed_origins", ""),
    ("gateway.trusted_proxies", ""),
    ("gateway.routes", crate::gateway::DEFAULT_ROUTES),
    ("gateway.rate_limit_redis_url", ""),
    ("log.format", "auto"),
    ("log.level", "info"),
    ("outbox.relay_enabled", "true"),
    ("outbox.poll_interval_ms", "1000"),
    ("topology.local_modules", "users,events"),
    ("topology.proxy", "false"),
    ("upstreams.users", "http://127.0.0.1:9091"),
    ("upstreams.events", "http://127.0.0.1:9000"),
    ("upstreams.users_internal", ""),
    ("upstreams.health_interval_ms", "2000"),
    ("upstreams.max_in_flight", "64"),
    ("service.credential", ""),
    ("service.internal_bind", ""),
    ("service.call_timeout_ms", "2000"),
    ("service.retries", "2"),
    ("service.breaker_failures", "5"),
    ("service.breaker_open_ms", "5000"),
    ("nats.url", "nats://127.0.0.1:4222"),
    ("nats.stream", "RSVP"),
    ("nats.subject_prefix", "rsvp"),
    ("nats.consumer", "events-service"),
];

impl Settings {
    /// The operators' layering: defaults, `config/default.toml`, `$RSVP_CONFIG`, environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_for(&[])
    }

    /// [`Settings::load`] with a binary's own defaults (a service's port, its modules) applied
    /// over the built-in ones.
    pub fn load_for(binary_defaults: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut builder = Self::defaults();
        for (key, value) in binary_defaults {
            builder = builder
                .set_default(*key, *value)
                .map_err(|e| ConfigError(format!("{key}: {e}")))?;
        }
        let mut builder =
            builder.add_source(File::with_name("config/default.toml").required(false));
        if let Ok(path) = std::env::var("RSVP_CONFIG") {
            builder = builder.add_source(File::with_name(&path).required(true));
        }
        let builder = builder.add_source(
            Environment::with_prefix("RSVP")
                .separator("__")
                .try_parsing(true),
        );
        Self::finish(builder)
    }

    /// Defaults plus explicit overrides and nothing from the environment: for tests and tools.
    pub fn with_overrides(overrides: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut builder = Self::defaults();
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, *value)
                .map_err(|e| ConfigError(format!("{key}: {e}")))?;
        }
        Self::finish(builder)
    }

    fn defaults() -> config::ConfigBuilder<config::builder::DefaultState> {
        DEFAULTS
            .iter()
            .fold(Config::builder(), |builder, (key, value)| {
                builder
                    .set_default(*key, *value)
                    .expect("default keys are valid")
            })
    }

    fn finish(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<Self, ConfigError> {
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return fail("server.bind", "expected an address such as 127.0.0.1:8000");
        }
        for (key, ms) in [
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
        ] {
            if !(1..=60_000).contains(&ms) {
                return fail(key, "must be between 1 and 60000 (ms)");
            }
        }
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return fail("auth.bcrypt_cost", "must be between 4 and 31");
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            return fail(
                "auth.access_ttl_secs / auth.refresh_ttl_secs",
                "must be positive",
            );
        }
        if self.database.max_connections == 0 {
            return fail("database.max_connections", "must be at least 1");
        }
        if let Err(why) = crate::platform::db::DatabaseUrl::parse(&self.database.url) {
            return fail("database.url", &why);
        }
        if self.gateway.body_limit_bytes == 0 {
            return fail("gateway.body_limit_bytes", "must be positive");
        }
        if let Err(why) = crate::gateway::TrustedProxies::parse(&self.gateway.trusted_proxies) {
            return fail("gateway.trusted_proxies", &why);
        }
        let redis_url = self.gateway.rate_limit_redis_url.as_str();
        if !redis_url.is_empty()
            && let Err(why) = redis::Client::open(redis_url)
        {
            return fail("gateway.rate_limit_redis_url", &why.to_string());
        }
        if let Err(why) = crate::gateway::Routes::parse(&self.gateway.routes) {
            return fail("gateway.routes", &why);
        }
        if self.upstreams.max_in_flight == 0 {
            return fail("upstreams.max_in_flight", "must be at least 1");
        }
        if self.outbox.poll_interval_ms == 0 {
            return fail("outbox.poll_interval_ms", "must be positive");
        }
        for module in self.local_modules() {
            if module != "users" && module != "events" {
                return fail("topology.local_modules", "expected users and/or events");
            }
        }
        if self.service.call_timeout_ms == 0 || self.upstreams.health_interval_ms == 0 {
            return fail(
                "service.call_timeout_ms / upstreams.health_interval_ms",
                "must be positive",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return fail("log.level", "not a valid filter directive");
        }
        Ok(())
    }

    /// The modules this process hosts.
    pub fn local_modules(&self) -> Vec<String> {
        list(&self.topology.local_modules)
    }

    /// Whether this process hosts `module`.
    pub fn hosts(&self, module: &str) -> bool {
        self.local_modules().iter().any(|m| m == module)
    }

    /// The configured CORS origins; empty when CORS is off.
    pub fn cors_origins(&self) -> Vec<String> {
        list(&self.gateway.cors_allowed_origins)
    }
}

/// Splits a comma-separated setting, dropping blanks.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::with_overrides(&[]).unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:8000");
        assert_eq!(s.database.url, "sqlite://data/rsvp.db");
        assert_eq!(s.auth.bcrypt_cost, 12);
        assert_eq!(s.auth.access_ttl_secs, 900);
        assert_eq!(s.auth.refresh_ttl_secs, 2_592_000);
        assert_eq!(s.gateway.auth_rate_per_minute, 30);
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (key, value, named) in [
            ("auth.bcrypt_cost", "2", "auth.bcrypt_cost"),
            ("auth.bcrypt_cost", "many", "bcrypt_cost"),
            ("database.url", "mysql://x", "database.url"),
            ("gateway.trusted_proxies", "lb", "gateway.trusted_proxies"),
            ("gateway.routes", "/api/events=billing", "gateway.routes"),
            (
                "gateway.rate_limit_redis_url",
                "http://redis",
                "gateway.rate_limit_redis_url",
            ),
            ("server.bind", "nowhere", "server.bind"),
        ] {
            let err = Settings::with_overrides(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }
}
