//! The reverse proxy of the split topology: public routes of modules this process does not
//! host go to their upstream instances. Round-robin over healthy instances; active health checks
//! on `/readyz`; passive ejection of an instance that refuses connections, or that times out
//! while another instance is usable (slowness under a burst is not death, and ejecting the last
//! instance would turn a queue into failures); a request that never reached an instance is
//! tried on the next one. Each instance takes at most `upstreams.max_in_flight` requests at
//! once and the rest wait their turn, so a burst reuses pooled connections instead of opening
//! a thousand at once. Request bodies are already bounded by the body limit and are buffered
//! (so they can be retried); responses are streamed.
//!
//! Requests go out through actix's own client, one per worker thread ([`ProxyWorker`]): the
//! upstream exchange runs in the task that accepted the request, headers are copied between maps
//! of the same type, and pooled connections need no locks. (With a client shared by all threads
//! the exchange crossed to a connection task and back, and the URL was parsed twice: a third of
//! the gateway's CPU.)
//!
//! Answers a service marks as the same for everyone are kept in the gateway's [`EdgeCache`]
//! (`cache.enabled`) and answered from there until a change they depend on; see its docs. The
//! gateway asks services for uncompressed answers to the reads it may keep and compresses those
//! itself.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse, ResponseError,
    error::PayloadError,
    http::{
        Method, StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    web,
};
use awc::error::{ConnectError, SendRequestError};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{
    ClientAddress, Metrics, Routes,
    edge_cache::{self, EdgeAnswer, EdgeCache, Ticket},
    request_context::REQUEST_ID,
};
use crate::platform::{
    changes::Changes,
    json::{BodyLimit, unreadable_body},
    problem::Problem,
    trace::TraceContext,
};

/// A refused connection fails at once; this only bounds a connect that gets no answer at all
/// (a host gone from the network), generously, since a busy host answers SYNs late.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an idle upstream connection is kept (the services close theirs after 5 s).
const UPSTREAM_IDLE: Duration = Duration::from_secs(4);

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus `host`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

struct Instance {
    base: String,
    /// Result of the last active health check (false before the first one).
    healthy: AtomicBool,
    /// Passive ejection: not chosen before this instant (millis since the proxy started).
    ejected_until_ms: AtomicU64,
    /// Requests in flight to this instance; the rest queue here.
    in_flight: Semaphore,
    /// When it last answered a proxied request (millis since the proxy started).
    last_answer_ms: AtomicU64,
    /// Health checks in a row that timed out.
    slow_checks: AtomicU32,
}

impl Instance {
    fn usable(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }
}

/// The instances of one module.
pub struct Upstream {
    pub module: &'static str,
    instances: Vec<Instance>,
    next: AtomicUsize,
}

impl Upstream {
    /// `max_in_flight` requests at once per instance.
    pub fn new(module: &'static str, bases: Vec<String>, max_in_flight: usize) -> Self {
        let instances = bases
            .into_iter()
            .map(|b| Instance {
                base: b.trim_end_matches('/').to_owned(),
                // Unknown until the first check answers: a gateway that started with its
                // services must not say "ready" before they listen (requests still try them).
                healthy: AtomicBool::new(false),
                ejected_until_ms: AtomicU64::new(0),
                in_flight: Semaphore::new(max_in_flight.max(1)),
                last_answer_ms: AtomicU64::new(0),
                slow_checks: AtomicU32::new(0),
            })
            .collect();
        Self {
            module,
            instances,
            next: AtomicUsize::new(0),
        }
    }

    /// Instances to try for one request, in round-robin order, usable ones first.
    fn candidates(&self, now_ms: u64) -> Vec<&Instance> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.instances.len();
        let ordered = (0..n).map(|i| &self.instances[(start + i) % n]);
        let (usable, rest): (Vec<_>, Vec<_>) = ordered.partition(|i| i.usable(now_ms));
        // When every instance looks down, still try them: the checks may lag a recovery.
        if usable.is_empty() { rest } else { usable }
    }

    /// Instances that passed their last health check and are not ejected.
    pub fn healthy_count(&self, now_ms: u64) -> usize {
        self.instances.iter().filter(|i| i.usable(now_ms)).count()
    }
}

/// The split gateway's reverse proxy: the route table, the upstreams and their health checks.
pub struct Proxy {
    /// The health checks' client (they run on the main runtime, not on a worker).
    client: reqwest::Client,
    /// How long an upstream may take to answer.
    timeout: Duration,
    routes: Routes,
    upstreams: Vec<Arc<Upstream>>,
    started: Instant,
    eject_for: Duration,
    /// How long a request may wait for its turn on an instance.
    queue_wait: Duration,
    /// This process's caches, told what a relayed write changed before its answer goes on.
    changes: Arc<Changes>,
    /// Answers kept, when caching is on.
    edge: Option<Arc<EdgeCache>>,
}

impl Proxy {
    /// `timeout`: how long an upstream may take to answer; `queue_wait`: how long a request may
    /// wait for its turn on an instance during a burst; `changes`: this process's, to which the
    /// changes services report are applied; `edge`: the cache of answers, if on.
    pub fn new(
        routes: Routes,
        upstreams: Vec<Upstream>,
        timeout: Duration,
        queue_wait: Duration,
        changes: Arc<Changes>,
        edge: Option<Arc<EdgeCache>>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(UPSTREAM_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            timeout,
            routes,
            upstreams: upstreams.into_iter().map(Arc::new).collect(),
            started: Instant::now(),
            eject_for: Duration::from_secs(10),
            queue_wait,
            changes,
            edge,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn upstream(&self, module: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|u| u.module == module)
            .map(Arc::as_ref)
    }

    /// Polls every instance's `/readyz` every `interval` until the process ends.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: Duration) {
        let proxy = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(proxy) = proxy.upgrade() else { break };
                for upstream in &proxy.upstreams {
                    for instance in &upstream.instances {
                        let url = format!("{}/readyz", instance.base);
                        let checked = proxy
                            .client
                            .get(url)
                            .timeout(Duration::from_secs(1))
                            .send()
                            .await;
                        let timed_out = checked.as_ref().is_err_and(reqwest::Error::is_timeout);
                        let slow_in_a_row = match timed_out {
                            true => instance.slow_checks.fetch_add(1, Ordering::Relaxed) + 1,
                            false => {
                                instance.slow_checks.store(0, Ordering::Relaxed);
                                0
                            }
                        };
                        // A check that only timed out while the instance keeps answering real
                        // requests means it is busy, not down.
                        let busy = timed_out
                            && proxy
                                .now_ms()
                                .saturating_sub(instance.last_answer_ms.load(Ordering::Relaxed))
                                < 2 * interval.as_millis() as u64 + 1_000;
                        let answered = checked.is_ok_and(|r| r.status().is_success());
                        // Nor is one slow check of a healthy instance (a moment's load on a
                        // shared machine): down after two in a row, or at once when refused or
                        // told "not ready". One never checked stays down until one answers.
                        let grace = slow_in_a_row == 1 && instance.healthy.load(Ordering::Relaxed);
                        let ok = answered || busy || grace;
                        if ok != instance.healthy.swap(ok, Ordering::Relaxed) {
                            if ok {
                                tracing::info!(module = upstream.module, instance = %instance.base, "upstream healthy");
                            } else {
                                tracing::warn!(module = upstream.module, instance = %instance.base, "upstream unhealthy");
                            }
                        }
                        if answered || busy {
                            instance.ejected_until_ms.store(0, Ordering::Relaxed);
                        }
                    }
                }
                drop(proxy);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// `Err` names an upstream with no usable instance.
    pub fn readiness(&self) -> Result<(), String> {
        let now = self.now_ms();
        match self.upstreams.iter().find(|u| u.healthy_count(now) == 0) {
            Some(u) => Err(format!("no healthy {} instance", u.module)),
            None => Ok(()),
        }
    }

    /// Fills the upstream gauges (instances, healthy ones) before a scrape.
    pub fn report(&self, metrics: &Metrics) {
        let now = self.now_ms();
        for upstream in &self.upstreams {
            let gauge = |state| {
                metrics
                    .upstream_instances
                    .with_label_values(&[upstream.module, state])
            };
            gauge("healthy").set(upstream.healthy_count(now) as i64);
            gauge("configured").set(upstream.instances.len() as i64);
        }
    }

    async fn forward(
        &self,
        client: &awc::Client,
        req: &HttpRequest,
        body: web::Bytes,
        edge: Option<Ticket>,
    ) -> Result<HttpResponse, Problem> {
        let path = req.path();
        let module = self
            .routes
            .module_of(path)
            .ok_or_else(|| Problem::not_found(format!("no route for {} {}", req.method(), path)))?;
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("module", module);
            span.record("otel.name", format!("{} {module}", req.method()));
        }
        let upstream = self
            .upstream(module)
            .ok_or_else(|| Problem::not_found(format!("no route for {} {}", req.method(), path)))?;
        let path_and_query = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
        let method = req.method();

        let mut last_error = String::new();
        for instance in upstream.candidates(self.now_ms()) {
            // Wait for a turn on this instance rather than pile new connections onto it.
            let Ok(Ok(_turn)) =
                tokio::time::timeout(self.queue_wait, instance.in_flight.acquire()).await
            else {
                last_error = "every connection to it stayed busy".to_owned();
                continue;
            };
            let mut request = client.request(
                method.clone(),
                format!("{}{}", instance.base, path_and_query),
            );
            forward_headers(req, request.headers_mut(), edge.is_some());
            // A bodiless request stays bodiless (no `Content-Length: 0` on a GET).
            let sent = if body.is_empty() && !carries_body(method) {
                request.send().await
            } else {
                request.send_body(body.clone()).await
            };
            match sent {
                Ok(response) => {
                    instance
                        .last_answer_ms
                        .store(self.now_ms(), Ordering::Relaxed);
                    let keep = edge.map(|ticket| (ticket, path_and_query));
                    return Ok(self.relay_back(response, keep).await);
                }
                Err(err) => {
                    let never_reached = matches!(err, SendRequestError::Connect(_));
                    // Refused: nobody listens there, so eject it. Slow: eject only while
                    // another instance can take its share.
                    let refused = never_reached
                        && !matches!(err, SendRequestError::Connect(ConnectError::Timeout));
                    if refused || upstream.healthy_count(self.now_ms()) > 1 {
                        instance.ejected_until_ms.store(
                            self.now_ms() + self.eject_for.as_millis() as u64,
                            Ordering::Relaxed,
                        );
                        tracing::warn!(module, instance = %instance.base, error = %err, "upstream failed; ejected");
                    } else {
                        tracing::warn!(module, instance = %instance.base, error = %err, "upstream failed; kept, it is the last usable one");
                    }
                    last_error = err.to_string();
                    // A request that never reached the instance may go to the next one, whatever
                    // its method; one that may have been processed only if it is idempotent.
                    if !never_reached && !method.is_idempotent() {
                        break;
                    }
                }
            }
        }
        tracing::warn!(module, error = %last_error, "no upstream answered");
        Err(Problem::unavailable(
            format!("the {module} service is unavailable"),
            5,
        ))
    }

    /// The upstream's answer, relayed to the client; its own `x-request-id` is replaced by
    /// ours. What it reports changed is applied first; `keep`: the ticket and key under which a
    /// cacheable answer is kept.
    async fn relay_back<S>(
        &self,
        mut response: awc::ClientResponse<S>,
        keep: Option<(Ticket, &str)>,
    ) -> HttpResponse
    where
        S: futures_util::Stream<Item = Result<web::Bytes, PayloadError>> + Unpin + 'static,
    {
        for change in edge_cache::changes_of(response.headers()) {
            self.changes.apply(&change);
        }
        // Only the uncompressed answers of the resource itself (not an error) are kept.
        let keep = keep
            .filter(|_| response.status() == StatusCode::OK)
            .filter(|_| !response.headers().contains_key(header::CONTENT_ENCODING))
            .and_then(|(ticket, key)| {
                let tags = edge_cache::tags_of(response.headers())?;
                Some((
                    ticket,
                    key,
                    tags,
                    edge_cache::resource_headers(response.headers()),
                ))
            });
        let mut builder = HttpResponse::build(response.status());
        let mut length = None;
        for (name, value) in response.headers() {
            if name == header::CONTENT_LENGTH {
                length = value.to_str().ok().and_then(|v| v.parse::<usize>().ok());
            }
            if HOP_BY_HOP.contains(&name.as_str())
                || name == REQUEST_ID
                || name == edge_cache::CACHE_TAGS
                || name == edge_cache::CHANGES
            {
                continue;
            }
            builder.append_header((name.clone(), value.clone()));
        }
        if length.is_some_and(|len| len <= BUFFER_UP_TO) {
            return match response.body().limit(BUFFER_UP_TO).await {
                Ok(body) => {
                    if let (Some(edge), Some((ticket, key, tags, headers))) = (&self.edge, keep) {
                        edge.fill(ticket, key, tags, EdgeAnswer::kept(headers, body.clone()));
                    }
                    builder.body(body)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "upstream answer cut short");
                    Problem::unavailable("the upstream answer was cut short", 1).error_response()
                }
            };
        }
        builder.streaming(response)
    }
}

/// Methods whose requests carry a body, even an empty one (`Content-Length: 0`).
fn carries_body(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH].contains(method)
}

/// Copies the client's headers onto the upstream request, minus those of the connection and
/// those the gateway vouches for itself: `X-Forwarded-*` as the request context resolved them
/// (the peer, or the chain a trusted proxy vouched for), our request id and trace context.
/// `uncompressed`: for an answer that may be kept (the gateway compresses it then).
fn forward_headers(req: &HttpRequest, headers: &mut HeaderMap, uncompressed: bool) {
    for (name, value) in req.headers() {
        if HOP_BY_HOP.contains(&name.as_str())
            || name.as_str().starts_with("x-forwarded-")
            || name == "traceparent"
            || name == REQUEST_ID
            || (uncompressed && name == header::ACCEPT_ENCODING)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(client) = req.extensions().get::<ClientAddress>() {
        insert(headers, "x-forwarded-for", &client.forwarded_for);
        insert(headers, "x-forwarded-proto", &client.proto);
    }
    if let Some(host) = req.headers().get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Some(context) = TraceContext::current() {
        insert(headers, "x-request-id", &context.request_id);
        insert(headers, "traceparent", &context.child_traceparent());
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The proxy as one worker thread uses it: the shared state, and the thread's own client and
/// connection pool. Each worker's app gets one (`App::app_data`).
#[derive(Clone)]
pub struct ProxyWorker {
    proxy: Arc<Proxy>,
    client: awc::Client,
}

impl ProxyWorker {
    /// A client for the calling worker thread; the connection timeout, idle time and request
    /// deadline are the proxy's.
    pub fn new(proxy: Arc<Proxy>) -> Self {
        let connector = awc::Connector::new()
            .timeout(CONNECT_TIMEOUT)
            // Below actix's 5 s keep-alive, so a pooled connection is never one the upstream
            // is closing at that very moment.
            .conn_keep_alive(UPSTREAM_IDLE)
            // The in-flight limit per instance is the proxy's (shared by every worker).
            .limit(0);
        let client = awc::Client::builder()
            .connector(connector)
            // The deadline of every request (until the answer's head arrives).
            .timeout(proxy.timeout)
            .disable_redirects()
            .no_default_headers()
            .finish();
        Self { proxy, client }
    }
}

/// Answers up to this size are relayed in one piece with their `Content-Length`; larger or
/// unsized ones are streamed. A small answer streamed chunk by chunk costs an extra write whose
/// ACK the client may delay (Nagle meets delayed ACK: ~40 ms on Linux).
const BUFFER_UP_TO: usize = 1024 * 1024;

/// The default service of a proxying gateway: everything no local route matched.
pub async fn proxy_request(
    req: HttpRequest,
    payload: web::Payload,
    worker: &ProxyWorker,
) -> HttpResponse {
    let limit = req
        .app_data::<web::Data<BodyLimit>>()
        .map_or(64 * 1024, |l| l.0);
    // A public read kept from before is answered at once; a miss of one may be kept.
    let edge = match (&worker.proxy.edge, req.method() == Method::GET) {
        (Some(edge), true) => {
            let key = req
                .uri()
                .path_and_query()
                .map_or(req.path(), |pq| pq.as_str());
            if let Some(answer) = edge.get(key) {
                return answer.respond();
            }
            Some(edge.ticket())
        }
        _ => None,
    };
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => {
            // The hop to the upstream, as a span of its own: the callee's spans hang under it.
            let span = tracing::info_span!(
                "proxy",
                otel.kind = "client",
                otel.name = tracing::field::Empty,
                module = tracing::field::Empty,
            );
            worker
                .proxy
                .forward(&worker.client, &req, body, edge)
                .instrument(span)
                .await
                .unwrap_or_else(|p| p.error_response())
        }
        Ok(Err(err)) => match err.as_error::<PayloadError>() {
            Some(err) => unreadable_body(err).error_response(),
            None => Problem::bad_request("the request body could not be read").error_response(),
        },
        Err(_) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body exceeds {limit} bytes"),
        )
        .error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's readiness counts healthy instances: one not checked yet is not counted
    /// (the gateway said "ready" before its services listened), yet requests still try it.
    #[test]
    fn an_instance_is_not_healthy_before_its_first_check_but_is_tried() {
        let upstream = Upstream::new("users", vec!["http://127.0.0.1:9".into()], 4);
        assert_eq!(upstream.healthy_count(0), 0);
        assert_eq!(upstream.candidates(0).len(), 1);
    }
}
