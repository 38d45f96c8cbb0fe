//! Calls between the processes of the split build: the `service` settings, and the headers every
//! call carries from the request it serves (its request id and a `traceparent` naming the
//! current span), so one request reads as one trace across processes. The client itself, the
//! credential check and the generated seams are the kit's (`modkit`).

use secrecy::SecretString;

use super::trace::TraceContext;

/// The `service` section of the configuration: service-to-service calls (split build).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServiceSettings {
    /// Shared secret internal endpoints require in `X-Service-Credential`; never printed.
    pub credential: SecretString,
    /// Extra listener for internal endpoints when this process is also the public entry.
    #[serde(deserialize_with = "super::settings::optional")]
    pub internal_bind: Option<String>,
    pub call_timeout_ms: u64,
    pub retries: u32,
    /// Consecutive failures that open the circuit, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
}

impl ServiceSettings {
    /// How the kit's clients call other processes.
    pub fn remote(&self) -> modkit::RemoteSettings {
        modkit::RemoteSettings {
            credential: self.credential.clone(),
            call_timeout_ms: self.call_timeout_ms,
            retries: self.retries,
            breaker_failures: self.breaker_failures,
            breaker_open_ms: self.breaker_open_ms,
        }
    }

    /// The credential internal endpoints require, as app data for them.
    pub fn credential(&self) -> modkit::Credential {
        modkit::Credential(self.credential.clone())
    }
}

/// The request id and trace context of the request being served, on every call it makes.
pub struct TracePropagation;

impl modkit::Propagation for TracePropagation {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let Some(context) = TraceContext::current() else {
            return Vec::new();
        };
        vec![
            ("x-request-id", context.request_id.clone()),
            ("traceparent", context.child_traceparent()),
        ]
    }
}

/// A client of the `module` at `instances`, as every split process builds them.
pub fn client(
    module: &'static str,
    instances: &[String],
    settings: &ServiceSettings,
) -> Result<std::sync::Arc<modkit::Remote>, modkit::SetupError> {
    let remote = modkit::Remote::new(module, instances.to_vec(), &settings.remote())?
        .with_propagation(std::sync::Arc::new(TracePropagation));
    Ok(std::sync::Arc::new(remote))
}
