//! The client side of a module in another process: pooled connections, a per-call timeout,
//! round-robin over the instances, retries with exponential backoff and full jitter (idempotent
//! calls only, or calls that never reached a server), and a circuit breaker so a dead dependency
//! costs a fast failure instead of a timeout on every request.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rand::Rng;
use reqwest::{Method, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use crate::{CREDENTIAL_HEADER, CallError};

/// How calls to another process behave.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RemoteSettings {
    /// The service credential every call carries.
    pub credential: SecretString,
    /// The longest a call may take, connecting included.
    pub call_timeout_ms: u64,
    /// How often a failed call is sent again (when that is safe).
    pub retries: u32,
    /// Consecutive failures that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit fails calls at once before one probe goes through.
    pub breaker_open_ms: u64,
}

/// Why a [`Remote`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No base URL was given for the module.
    #[error("no instances configured for {0}")]
    NoInstances(&'static str),
    /// The HTTP client could not be built (its TLS backend, say).
    #[error("http client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Headers a call carries from the request it serves, so the other process's logs and traces
/// join this one's: a request id, a W3C `traceparent`.
pub trait Propagation: Send + Sync {
    /// The headers to add to the call about to be sent.
    fn headers(&self) -> Vec<(&'static str, String)>;
}

/// Calls one module's instances in other processes: pooled, timed out, retried when safe,
/// behind a breaker. The generated `<Trait>Remote` clients call through one.
pub struct Remote {
    service: &'static str,
    http: reqwest::Client,
    instances: Vec<String>,
    next: AtomicUsize,
    credential: SecretString,
    retries: u32,
    breaker: CircuitBreaker,
    propagation: Option<Arc<dyn Propagation>>,
}

impl Remote {
    /// A client of `service` at `instances` (base URLs), with the timeouts, retries and breaker
    /// of `settings`.
    pub fn new(
        service: &'static str,
        instances: Vec<String>,
        settings: &RemoteSettings,
    ) -> Result<Self, SetupError> {
        if instances.is_empty() {
            return Err(SetupError::NoInstances(service));
        }
        let timeout = Duration::from_millis(settings.call_timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            // Below the callee's 5 s keep-alive: never reuse a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(4))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(SetupError::Http)?;
        Ok(Self {
            service,
            http,
            instances: instances
                .into_iter()
                .map(|i| i.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
            credential: settings.credential.clone(),
            retries: settings.retries,
            breaker: CircuitBreaker::new(
                settings.breaker_failures,
                Duration::from_millis(settings.breaker_open_ms),
            ),
            propagation: None,
        })
    }

    /// Adds `propagation`'s headers (a request id, a `traceparent`) to every call.
    pub fn with_propagation(mut self, propagation: Arc<dyn Propagation>) -> Self {
        self.propagation = Some(propagation);
        self
    }

    /// Calls the method at `route` with `arguments` (what the generated clients do).
    pub async fn call<A: Serialize, T: DeserializeOwned>(
        &self,
        route: &str,
        arguments: &A,
        idempotent: bool,
    ) -> Result<T, CallError> {
        self.post_json(route, arguments, idempotent).await
    }

    /// GETs `path` from an instance (retried: GET is idempotent) and parses the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.send(Method::GET, path, None, true).await
    }

    /// POSTs `body`; `idempotent` says whether the call may be repeated after it reached a server.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotent: bool,
    ) -> Result<T, CallError> {
        let body =
            serde_json::to_vec(body).map_err(|e| self.unavailable(format!("encode: {e}")))?;
        self.send(Method::POST, path, Some(body), idempotent).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotent: bool,
    ) -> Result<T, CallError> {
        // One span per call, retries included: the callee's spans hang under it.
        let span = tracing::info_span!(
            "service call",
            otel.kind = "client",
            otel.name = %format_args!("{method} {}", self.service),
            service = self.service,
        );
        self.call_instances(method, path, body, idempotent)
            .instrument(span)
            .await
    }

    async fn call_instances<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotent: bool,
    ) -> Result<T, CallError> {
        if !self.breaker.allows() {
            return Err(self.unavailable("circuit open after repeated failures".into()));
        }
        let mut attempt = 0;
        loop {
            let base =
                &self.instances[self.next.fetch_add(1, Ordering::Relaxed) % self.instances.len()];
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .headers(self.headers());
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            let (retryable, why) = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let decoded = response.json::<T>().await;
                    match decoded {
                        Ok(value) => {
                            self.breaker.record_success();
                            return Ok(value);
                        }
                        Err(e) => (idempotent, format!("undecodable answer from {base}: {e}")),
                    }
                }
                Ok(response) if response.status().is_client_error() => {
                    self.breaker.record_success();
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    return Err(CallError::Rejected {
                        service: self.service,
                        status,
                        body,
                    });
                }
                Ok(response) => (idempotent, format!("{base} answered {}", response.status())),
                // A refused connection never reached the server: safe to retry any call.
                Err(e) if e.is_connect() => (true, format!("cannot connect to {base}: {e}")),
                Err(e) if e.is_timeout() => (idempotent, format!("{base} timed out")),
                Err(e) => (idempotent, format!("{base}: {e}")),
            };
            tracing::warn!(service = self.service, attempt, %why, "service call failed");
            if !retryable || attempt >= self.retries {
                self.breaker.record_failure();
                return Err(self.unavailable(why));
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = self.credential.expose_secret().parse() {
            headers.insert(CREDENTIAL_HEADER, value);
        }
        for (name, value) in self.propagation.iter().flat_map(|p| p.headers()) {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        headers
    }

    fn unavailable(&self, why: String) -> CallError {
        CallError::Unavailable {
            service: self.service,
            why,
        }
    }
}

/// Exponential backoff (50 ms, 100 ms, 200 ms, ... capped at 1 s) with full jitter, so many
/// callers retrying at once spread out instead of hammering a recovering service together.
fn backoff(attempt: u32) -> Duration {
    let cap = 50u64.saturating_mul(1 << attempt.min(5)).min(1000);
    Duration::from_millis(rand::thread_rng().gen_range(0..=cap))
}

/// Opens after `threshold` consecutive failures. After `open_for` it is half-open: one call goes
/// through as a probe while the others still fail fast; the probe's success closes the circuit,
/// its failure opens it again.
struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl CircuitBreaker {
    fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    fn allows(&self) -> bool {
        let mut open_until = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        match *open_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                // This caller is the probe; the next ones wait for its outcome.
                *open_until = Some(Instant::now() + self.open_for);
                true
            }
            Some(_) => false,
        }
    }

    fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn record_failure(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + self.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            assert!(backoff(attempt) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_recovers() {
        let breaker = CircuitBreaker::new(2, Duration::from_millis(30));
        breaker.record_failure();
        assert!(breaker.allows());
        breaker.record_failure();
        assert!(!breaker.allows());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allows(), "half-open after the cool-down: one probe");
        assert!(
            !breaker.allows(),
            "the others still fail fast while it runs"
        );
        breaker.record_failure();
        assert!(!breaker.allows(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.allows());
        breaker.record_success();
        assert!(breaker.allows(), "a successful probe closes it");
        breaker.record_failure();
        assert!(breaker.allows(), "a success resets the count");
    }

    /// A callee answering from a script (one entry per call, the last one repeating) after the
    /// scripted delay, counting the calls that reached it.
    struct Callee {
        address: String,
        calls: std::sync::Arc<AtomicUsize>,
    }

    impl Callee {
        async fn start(script: &[(u16, u64)]) -> Self {
            use actix_web::{App, HttpResponse, HttpServer, http::StatusCode, web};
            let calls = std::sync::Arc::new(AtomicUsize::new(0));
            let script = std::sync::Arc::new(script.to_vec());
            let counter = calls.clone();
            let server = HttpServer::new(move || {
                let (script, counter) = (script.clone(), counter.clone());
                App::new().default_service(web::to(move || {
                    let (script, counter) = (script.clone(), counter.clone());
                    async move {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let (status, delay_ms) = script[n.min(script.len() - 1)];
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        HttpResponse::build(StatusCode::from_u16(status).unwrap())
                            .json(serde_json::json!({ "call": n }))
                    }
                }))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
            let address = format!("http://{}", server.addrs()[0]);
            tokio::spawn(server.run());
            Self { address, calls }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn client(instances: &[&str], retries: u32, breaker_failures: u32) -> Remote {
        let settings = RemoteSettings {
            credential: "secret".into(),
            call_timeout_ms: 200,
            retries,
            breaker_failures,
            breaker_open_ms: 60_000,
        };
        let instances = instances.iter().map(|i| i.to_string()).collect();
        Remote::new("callee", instances, &settings).unwrap()
    }

    type Answer = Result<serde_json::Value, CallError>;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idempotent_calls_are_retried_until_one_succeeds() {
        let callee = Callee::start(&[(503, 0), (502, 0), (200, 0)]).await;
        let answer: Answer = client(&[&callee.address], 2, 5).get_json("/x").await;
        assert_eq!(answer.unwrap()["call"], 2);
        assert_eq!(callee.calls(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_reached_the_callee_is_repeated_only_when_idempotent() {
        let callee = Callee::start(&[(503, 0), (200, 0), (503, 0), (200, 0)]).await;
        let client = client(&[&callee.address], 2, 5);
        let once: Answer = client.post_json("/x", &(), false).await;
        assert!(
            matches!(once, Err(CallError::Unavailable { .. })),
            "{once:?}"
        );
        assert_eq!(
            callee.calls(),
            1,
            "a write that may have happened is not sent again"
        );
        let again: Answer = client.post_json("/x", &(), true).await;
        assert_eq!(again.unwrap()["call"], 1);
        let retried: Answer = client.post_json("/x", &(), true).await;
        assert_eq!(retried.unwrap()["call"], 3);
        assert_eq!(callee.calls(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_callee_costs_one_timeout_not_a_hang() {
        let callee = Callee::start(&[(200, 2_000)]).await;
        let started = Instant::now();
        let answer: Answer = client(&[&callee.address], 0, 5).get_json("/x").await;
        assert!(
            matches!(answer, Err(CallError::Unavailable { .. })),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_connection_moves_on_to_the_next_instance_even_for_a_write() {
        let callee = Callee::start(&[(200, 0)]).await;
        // Port 9 (discard) is closed on loopback: the first instance in the rotation is dead.
        let client = client(&["http://127.0.0.1:9", &callee.address], 1, 5);
        let answer: Answer = client.post_json("/x", &(), false).await;
        assert_eq!(answer.unwrap()["call"], 0);
        assert_eq!(callee.calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_are_not_retried_and_do_not_open_the_circuit() {
        let callee = Callee::start(&[(404, 0)]).await;
        let client = client(&[&callee.address], 2, 1);
        for call in 1..=2 {
            let answer: Answer = client.get_json("/x").await;
            assert!(
                matches!(answer, Err(CallError::Rejected { status, .. }) if status == 404),
                "{answer:?}"
            );
            assert_eq!(callee.calls(), call);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_circuit_fails_fast_without_calling() {
        let callee = Callee::start(&[(503, 0)]).await;
        let client = client(&[&callee.address], 0, 2);
        for _ in 0..2 {
            let answer: Answer = client.get_json("/x").await;
            assert!(answer.is_err());
        }
        assert_eq!(callee.calls(), 2);
        let started = Instant::now();
        let answer: Answer = client.get_json("/x").await;
        let Err(CallError::Unavailable { why, .. }) = answer else {
            panic!("{answer:?}")
        };
        assert!(why.contains("circuit open"), "{why}");
        assert_eq!(callee.calls(), 2, "the open circuit spared the callee");
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
