//! Prometheus metrics: request counts and latency histograms per route pattern and status,
//! plus whatever gauges the topology reports (pool sizes, upstream health) at scrape time.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Free-form gauges a topology fills before each scrape, e.g. `db_pool_connections`.
    pub gauges: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("rsvp".into()), None).expect("valid prefix");
        let labels = &["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern and status",
            ),
            labels,
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            labels,
        )
        .expect("valid metric");
        let gauges = IntGaugeVec::new(
            Opts::new(
                "component_gauge",
                "Pool and upstream gauges, by component and state",
            ),
            &["component", "state"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(gauges.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            registry,
            requests,
            latency,
            gauges,
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Records every request under its route pattern (`/api/events/{id}`), never its raw path, so
/// the number of series stays bounded.
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let request = response.request();
        let route = request
            .match_pattern()
            .or_else(|| {
                request
                    .extensions()
                    .get::<RouteLabel>()
                    .map(|l| l.0.clone())
            })
            .unwrap_or_else(|| "unmatched".to_owned());
        metrics.observe(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

/// The route a proxied request took, set by the proxy (no local route matched it).
#[derive(Clone)]
pub struct RouteLabel(pub String);

#[cfg(feature = "split")]
/// A public path as its route pattern: every segment that is not a word of the API (an id,
/// or garbage) becomes `{id}`, so labels stay few and match the monolith's patterns.
pub fn route_pattern(path: &str) -> String {
    const WORDS: &[&str] = &[
        "api",
        "auth",
        "register",
        "login",
        "refresh",
        "logout",
        "users",
        "me",
        "events",
        "registrations",
        ".well-known",
        "jwks.json",
    ];
    path.split('/')
        .map(|segment| {
            if segment.is_empty() || WORDS.contains(&segment) {
                segment
            } else {
                "{id}"
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub fn text_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

#[cfg(all(test, feature = "split"))]
mod tests {
    use super::route_pattern;

    #[test]
    fn paths_become_bounded_patterns() {
        assert_eq!(
            route_pattern("/api/events/0193-abc/registrations/me"),
            "/api/events/{id}/registrations/me"
        );
        assert_eq!(
            route_pattern("/api/users/me/registrations"),
            "/api/users/me/registrations"
        );
        assert_eq!(
            route_pattern("/.well-known/jwks.json"),
            "/.well-known/jwks.json"
        );
        assert_eq!(
            route_pattern("/api/events/x/y/z"),
            "/api/events/{id}/{id}/{id}"
        );
    }
}
