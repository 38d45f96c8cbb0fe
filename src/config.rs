//! Configuration, layered: built-in defaults (every one of them in [`DEFAULTS`] and
//! [`Role::defaults`], nowhere else), `config/default.toml`, the file named by `RSVP_CONFIG`,
//! then `RSVP__SECTION__KEY` environment variables.
//!
//! Each section's type belongs to the layer that uses it (the database settings to
//! `platform::db`, the gateway's to `gateway`, ...) and deserializes into typed values: URLs,
//! route tables, address lists and secrets are parsed once, here, and a value that does not
//! parse stops the start with a message naming its key. Only the composition (this file and
//! `topology`) sees the whole [`Settings`].

use config::{Config, ConfigBuilder, Environment, File, builder::DefaultState};
use serde::Deserialize;

#[cfg(feature = "split")]
use crate::platform::remote::ServiceSettings;
use crate::{
    gateway::GatewaySettings,
    modules::users::AuthSettings,
    platform::{
        db::DatabaseSettings,
        outbox::OutboxSettings,
        read_cache::CacheSettings,
        telemetry::{LogSettings, TelemetrySettings},
    },
};
#[cfg(feature = "split")]
use modkit::nats::NatsSettings;

/// Every setting of a process, grouped by the section names operators see.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The layered configuration itself: each module reads its own section from it.
    #[serde(skip)]
    pub raw: RawConfig,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub outbox: OutboxSettings,
    pub cache: CacheSettings,
    #[cfg(feature = "split")]
    pub topology: TopologySettings,
    #[cfg(feature = "split")]
    pub upstreams: UpstreamSettings,
    #[cfg(feature = "split")]
    pub service: ServiceSettings,
    #[cfg(feature = "split")]
    pub nats: NatsSettings,
}

/// The whole layered configuration, as modules read their sections from it. Never printed: it
/// holds the secrets the typed sections keep hidden.
#[derive(Clone, Default)]
pub struct RawConfig(pub std::sync::Arc<Config>);

impl std::fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawConfig(..)")
    }
}

/// The HTTP server of a process.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Address the public listener binds; port 0 picks a free one.
    pub bind: std::net::SocketAddr,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long a client may take to send a request's headers (then `408`).
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body, from the request's start (then
    /// `408`).
    pub body_timeout_ms: u64,
    /// Where `/metrics` is served instead of the public listener (empty: on the public one).
    #[serde(deserialize_with = "crate::platform::settings::optional")]
    pub metrics_bind: Option<String>,
}

impl ServerSettings {
    /// `header_timeout_ms` as a duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }

    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms)
    }
}

/// Which modules a split process hosts, and whether it is the public entry.
#[cfg(feature = "split")]
#[derive(Debug, Clone, Deserialize)]
pub struct TopologySettings {
    /// Names of registered modules ([`crate::modules::MODULES`]); none for a pure gateway.
    #[serde(deserialize_with = "crate::platform::settings::list")]
    pub local_modules: Vec<String>,
    /// Whether this process is the public entry, proxying routes of modules it does not host.
    pub proxy: bool,
}

#[cfg(feature = "split")]
impl TopologySettings {
    /// Whether this process hosts `module`.
    pub fn hosts(&self, module: &str) -> bool {
        self.local_modules.iter().any(|m| m == module)
    }
}

/// How the split gateway treats the instances of remote modules. The instances themselves are
/// `upstreams.<module>` (base URLs; `upstreams.<module>_internal` where callers reach a module's
/// internal endpoint elsewhere), read per module ([`crate::modules::hosting::Process::instances`]).
#[cfg(feature = "split")]
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    pub health_interval_ms: u64,
    /// Requests the split gateway sends one instance at once; more wait for a turn.
    pub max_in_flight: usize,
    /// How long a request may wait for that turn before it is answered `503`.
    pub queue_timeout_ms: u64,
}

/// A configuration that can not be used, naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read, or a value not deserialized (the message names the key).
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value deserialized but breaks a rule.
    #[error("invalid configuration: {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// The built-in defaults of every process; a role's own come on top ([`Role::defaults`]).
/// `config/default.toml` documents each of them.
const DEFAULTS: &[(&str, &str)] = &[
    ("server.bind", "127.0.0.1:8000"),
    ("server.workers", "0"),
    ("server.header_timeout_ms", "5000"),
    ("server.body_timeout_ms", "10000"),
    ("server.metrics_bind", ""),
    ("server.public_url", "http://127.0.0.1:8000"),
    ("database.url", "sqlite://data/rsvp.db"),
    ("database.max_connections", "10"),
    ("database.connect_timeout_secs", "5"),
    ("database.password_file", ""),
    ("auth.bcrypt_cost", "12"),
    ("auth.access_ttl_secs", "900"),
    ("auth.refresh_ttl_secs", "2592000"),
    ("auth.signing_key_path", "data/signing_key.pem"),
    ("auth.retired_signing_key_paths", ""),
    ("auth.issuer", "rsvp"),
    ("auth.password_attempts_per_minute", "30"),
    ("gateway.auth_rate_per_minute", "30"),
    ("gateway.body_limit_bytes", "65536"),
    ("gateway.cors_allowed_origins", ""),
    ("gateway.trusted_proxies", ""),
    ("gateway.rate_limit_redis_url", ""),
    ("log.format", "auto"),
    ("log.level", "info"),
    ("telemetry.otlp_endpoint", ""),
    ("telemetry.otlp_protocol", "http/protobuf"),
    ("telemetry.service_name", "rsvp"),
    ("telemetry.export_delay_ms", "5000"),
    ("outbox.relay_enabled", "true"),
    ("outbox.poll_interval_ms", "1000"),
    ("cache.enabled", "true"),
    ("cache.max_bytes", "4194304"),
    ("cache.ttl_ms", "10000"),
    ("topology.proxy", "false"),
    ("upstreams.health_interval_ms", "2000"),
    ("upstreams.max_in_flight", "64"),
    ("upstreams.queue_timeout_ms", "30000"),
    ("service.credential", ""),
    ("service.internal_bind", ""),
    ("service.call_timeout_ms", "2000"),
    ("service.retries", "2"),
    ("service.breaker_failures", "5"),
    ("service.breaker_open_ms", "5000"),
    ("nats.url", "nats://127.0.0.1:4222"),
    ("nats.stream", "RSVP"),
    ("nats.subject_prefix", "rsvp"),
    ("nats.consumer", "rsvp"),
];

/// What a binary runs as; each role has defaults of its own under the operator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `rsvp`: everything in one process.
    Monolith,
    /// `rsvp-gateway`: the public entry of the split topology.
    #[cfg(feature = "split")]
    Gateway,
    /// `rsvp-<module>`: one module's service.
    #[cfg(feature = "split")]
    Service(&'static str),
}

impl Role {
    /// The role's defaults over [`DEFAULTS`] and the registry's: a service's port, database
    /// file and modules.
    pub fn defaults(self) -> Vec<(String, String)> {
        match self {
            Role::Monolith => Vec::new(),
            #[cfg(feature = "split")]
            Role::Gateway => pairs(&[
                ("topology.local_modules", ""),
                ("topology.proxy", "true"),
                ("telemetry.service_name", "rsvp-gateway"),
            ]),
            #[cfg(feature = "split")]
            Role::Service(name) => {
                let port = crate::modules::module(name)
                    .and_then(|m| m.declaration.default_url.rsplit(':').next())
                    .unwrap_or("0");
                let mut defaults = pairs(&[("gateway.auth_rate_per_minute", "0")]);
                defaults.extend([
                    ("topology.local_modules".into(), name.to_owned()),
                    ("server.bind".into(), format!("127.0.0.1:{port}")),
                    ("database.url".into(), format!("sqlite://data/{name}.db")),
                    ("telemetry.service_name".into(), format!("rsvp-{name}")),
                ]);
                defaults
            }
        }
    }
}

/// Owned copies of `pairs`.
#[cfg(feature = "split")]
fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The defaults the registry of modules implies: every module hosted (the monolith), each
/// module's instances at its default address, the route table of their public prefixes.
fn registry_defaults() -> Vec<(String, String)> {
    let modules = crate::modules::MODULES;
    let mut defaults = vec![
        (
            "topology.local_modules".to_owned(),
            modules
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "gateway.routes".to_owned(),
            modkit::route_table(&crate::modules::declarations()),
        ),
    ];
    for module in modules {
        let name = module.name();
        defaults.extend(
            module
                .settings
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        defaults.push((
            format!("upstreams.{name}"),
            module.declaration.default_url.to_owned(),
        ));
        defaults.push((format!("upstreams.{name}_internal"), String::new()));
    }
    defaults
}

impl Settings {
    /// The operators' layering for `role`: defaults, `config/default.toml`, `$RSVP_CONFIG`,
    /// environment.
    pub fn load(role: Role) -> Result<Self, ConfigError> {
        let mut builder = Self::defaults(role)?
            .add_source(File::with_name("config/default.toml").required(false));
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

    /// The monolith's defaults plus explicit overrides and nothing from files or the
    /// environment: for tests and tools.
    pub fn with_overrides(overrides: &[(&str, &str)]) -> Result<Self, ConfigError> {
        let mut builder = Self::defaults(Role::Monolith)?;
        for (key, value) in overrides {
            builder = builder.set_override(*key, *value)?;
        }
        Self::finish(builder)
    }

    fn defaults(role: Role) -> Result<ConfigBuilder<DefaultState>, ConfigError> {
        let mut builder = Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
        }
        for (key, value) in registry_defaults().into_iter().chain(role.defaults()) {
            builder = builder.set_default(key, value)?;
        }
        Ok(builder)
    }

    fn finish(builder: ConfigBuilder<DefaultState>) -> Result<Self, ConfigError> {
        let raw = builder.build()?;
        let mut settings: Settings = raw.clone().try_deserialize()?;
        settings.raw = RawConfig(std::sync::Arc::new(raw));
        settings.validate()?;
        Ok(settings)
    }

    /// The rules a value's type does not already carry.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_owned(),
            })
        };
        for (key, ms) in [
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
        ] {
            if !(1..=60_000).contains(&ms) {
                return invalid(key, "must be between 1 and 60000 (ms)");
            }
        }
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return invalid("auth.bcrypt_cost", "must be between 4 and 31");
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            return invalid(
                "auth.access_ttl_secs / auth.refresh_ttl_secs",
                "must be positive",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.gateway.body_limit_bytes == 0 {
            return invalid("gateway.body_limit_bytes", "must be positive");
        }
        if let Some(url) = &self.gateway.rate_limit_redis_url
            && let Err(why) = redis::Client::open(url.as_str())
        {
            return invalid("gateway.rate_limit_redis_url", &why.to_string());
        }
        let registered = |name: &str| crate::modules::module(name).is_some();
        if let Some(name) = self.gateway.routes.modules().find(|m| !registered(m)) {
            return invalid("gateway.routes", &format!("{name:?} is not a module"));
        }
        #[cfg(feature = "split")]
        if let Some(name) = self.topology.local_modules.iter().find(|m| !registered(m)) {
            return invalid(
                "topology.local_modules",
                &format!("{name:?} is not a module"),
            );
        }
        if self.outbox.poll_interval_ms == 0 {
            return invalid("outbox.poll_interval_ms", "must be positive");
        }
        if !(1..=3_600_000).contains(&self.cache.ttl_ms) {
            return invalid("cache.ttl_ms", "must be between 1 and 3600000 (ms)");
        }
        if let Some(why) = self.telemetry.endpoint_problem() {
            return invalid("telemetry.otlp_endpoint", &why);
        }
        if !(1..=60_000).contains(&self.telemetry.export_delay_ms) {
            return invalid(
                "telemetry.export_delay_ms",
                "must be between 1 and 60000 (ms)",
            );
        }
        #[cfg(feature = "split")]
        {
            if self.service.call_timeout_ms == 0 || self.upstreams.health_interval_ms == 0 {
                return invalid(
                    "service.call_timeout_ms / upstreams.health_interval_ms",
                    "must be positive",
                );
            }
            if self.upstreams.max_in_flight == 0 {
                return invalid("upstreams.max_in_flight", "must be at least 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::with_overrides(&[]).unwrap();
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(
            s.database.url,
            crate::platform::db::DatabaseUrl::Sqlite("data/rsvp.db".into())
        );
        assert_eq!(s.auth.bcrypt_cost, 12);
        assert_eq!(s.auth.access_ttl_secs, 900);
        assert_eq!(s.auth.refresh_ttl_secs, 2_592_000);
        assert_eq!(s.gateway.auth_rate_per_minute, 30);
        assert!(s.gateway.cors_allowed_origins.is_empty());
        assert_eq!(s.gateway.rate_limit_redis_url, None);
        assert_eq!(s.telemetry.otlp_endpoint, None);
        assert_eq!(s.telemetry.service_name, "rsvp");
    }

    #[test]
    fn an_otlp_endpoint_needs_the_exporter_compiled_in() {
        let endpoint = [("telemetry.otlp_endpoint", "http://collector:4318")];
        let loaded = Settings::with_overrides(&endpoint);
        if cfg!(feature = "otlp") {
            assert!(loaded.unwrap().telemetry.otlp_endpoint.is_some());
        } else {
            let err = loaded.unwrap_err().to_string();
            assert!(err.contains("--features otlp"), "{err}");
        }
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
            ("log.level", "info,=[", "log.level"),
            ("server.body_timeout_ms", "0", "server.body_timeout_ms"),
            (
                "telemetry.otlp_endpoint",
                "collector:4318",
                "telemetry.otlp_endpoint",
            ),
            (
                "telemetry.otlp_endpoint",
                "ftp://c",
                "telemetry.otlp_endpoint",
            ),
            ("telemetry.otlp_protocol", "grpc", "otlp_protocol"),
            (
                "telemetry.export_delay_ms",
                "0",
                "telemetry.export_delay_ms",
            ),
        ] {
            let err = Settings::with_overrides(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn lists_come_as_comma_separated_strings_or_arrays() {
        let s = Settings::with_overrides(&[
            (
                "gateway.cors_allowed_origins",
                "https://a.example, https://b.example",
            ),
            ("gateway.trusted_proxies", "10.0.0.0/8,192.168.1.1"),
        ])
        .unwrap();
        assert_eq!(
            s.gateway.cors_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn the_default_route_table_sends_each_contract_path_to_its_module() {
        let routes = Settings::with_overrides(&[]).unwrap().gateway.routes;
        for (path, module) in [
            ("/api/users/me/registrations", Some("events")),
            ("/api/events", Some("events")),
            ("/api/events/1/registrations/me", Some("events")),
            ("/api/users/me", Some("users")),
            ("/api/users", Some("users")),
            ("/api/auth/login", Some("users")),
            ("/.well-known/jwks.json", Some("users")),
            ("/api/eventsx", None),
            ("/api/other", None),
            ("/internal/users/public_profiles", None),
            ("/", None),
        ] {
            assert_eq!(routes.module_of(path), module, "{path}");
        }
    }

    #[cfg(feature = "split")]
    #[test]
    fn each_role_has_its_own_defaults_and_the_credential_never_prints() {
        let users = Settings::load(Role::Service("users")).unwrap();
        assert_eq!(users.topology.local_modules, ["users"]);
        assert_eq!(users.server.bind.port(), 9091);
        let gateway = Settings::load(Role::Gateway).unwrap();
        assert!(gateway.topology.proxy && gateway.topology.local_modules.is_empty());
        let with_secret =
            Settings::with_overrides(&[("service.credential", "hunter2-secret")]).unwrap();
        assert!(!format!("{with_secret:?}").contains("hunter2"));
        let err =
            Settings::with_overrides(&[("topology.local_modules", "users,billing")]).unwrap_err();
        assert!(err.to_string().contains("billing"), "{err}");
    }
}
