//! Prometheus metrics: request counts and latency histograms per route pattern and status,
//! plus whatever gauges the topology reports (pool sizes, upstream health) at scrape time.

use std::time::Instant;

use super::known_routes::route_label;
use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::Method,
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
    /// The database pool's connections by `state` (`open`, `idle`, `max`), filled at scrape.
    pub pool_connections: IntGaugeVec,
    /// A split gateway's instances of each module by `state` (`configured`, `healthy`).
    pub upstream_instances: IntGaugeVec,
}

impl Metrics {
    /// A registry with the request counter, the latency histogram and the gauges.
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
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let pool_connections = gauge(
            "db_pool_connections",
            "Database pool connections by state (open, idle, max)",
            &["state"],
        );
        let upstream_instances = gauge(
            "upstream_instances",
            "A split gateway's instances of each module by state (configured, healthy)",
            &["module", "state"],
        );
        let build_info = gauge(
            "build_info",
            "Always 1: the running build's version and the topologies it can run",
            &["version", "split"],
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &cfg!(feature = "split").to_string(),
            ])
            .set(1);
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(pool_connections.clone()),
            Box::new(upstream_instances.clone()),
            Box::new(build_info),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        // CPU seconds, resident memory, open file descriptors of this process (Linux).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once");
        Self {
            registry,
            requests,
            latency,
            pool_connections,
            upstream_instances,
        }
    }

    /// Adds a collector; one registered twice is reported once.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(err) = self.registry.register(collector) {
            tracing::debug!(error = %err, "collector already registered");
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
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

/// The `method` label: a standard method by name, anything a client made up as `other`, so no
/// client can add series by inventing methods.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records every request under its route pattern (`/api/events/{id}`), never its raw path, so
/// the number of series stays bounded. The method is taken before the request is canonical, so a
/// `HEAD` counts as `HEAD` although it is served as `GET`.
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        // The route's pattern (a proxied request's too), else `unmatched`: never the path.
        let route = route_label(response.request());
        metrics.observe(
            method,
            route.as_deref().unwrap_or("unmatched"),
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

pub fn text_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::method_label;
    use actix_web::http::Method;

    #[test]
    fn only_standard_methods_name_themselves() {
        for standard in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let method = Method::from_bytes(standard.as_bytes()).unwrap();
            assert_eq!(method_label(&method), standard);
        }
        for other in ["BREW", "get", "PROPFIND", "X1234", "TRACE", "CONNECT"] {
            let method = Method::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other");
        }
    }
}
