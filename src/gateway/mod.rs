//! The gateway: the one public entry of every topology. It owns the shape of the public
//! application (request ids, access log, metrics, CORS, rate limit, body limit, error bodies,
//! operations endpoints, OpenAPI document, the web app); a topology only supplies the routes.

mod api_reference;
mod canonical_path;
mod client_address;
#[cfg(feature = "split")]
pub mod edge_cache;
mod known_routes;
mod metrics;
mod openapi;
#[cfg(feature = "split")]
pub mod proxy;
mod rate_limit;
mod request_context;
mod routes;
mod slow_clients;
mod web_app;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use actix_cors::Cors;
use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer, ResponseError,
    body::MessageBody,
    dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    middleware::{Condition, from_fn},
    web,
};
use async_trait::async_trait;

pub use canonical_path::{ArrivedAsHead, PathError, canonical_path};
pub use client_address::{ClientAddress, TrustedProxies};
pub use known_routes::KnownRoutes;
pub use metrics::Metrics;
pub use openapi::openapi_document;
pub use rate_limit::{AuthRateLimit, RateLimitError};
pub use request_context::{REQUEST_ID, RequestId, TRACEPARENT};
pub use routes::Routes;

use crate::platform::{compression::Encodings, json::BodyLimit, problem::Problem};
use slow_clients::BodyDeadline;

/// The `gateway` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GatewaySettings {
    /// Requests per minute per client IP on `/api/auth/*`; 0 turns the limit off.
    pub auth_rate_per_minute: u32,
    pub body_limit_bytes: usize,
    /// Allowed origins for CORS; empty disables CORS, `*` allows any.
    #[serde(deserialize_with = "crate::platform::settings::list")]
    pub cors_allowed_origins: Vec<String>,
    /// The proxies in front of the gateway whose `X-Forwarded-For`/`-Proto` are believed;
    /// empty: the gateway is the edge.
    pub trusted_proxies: TrustedProxies,
    /// Redis shared by the gateway's instances for the auth rate limit; none: count alone.
    #[serde(deserialize_with = "crate::platform::settings::optional")]
    pub rate_limit_redis_url: Option<String>,
    /// Split build: the `prefix=module` table the gateway proxies by.
    pub routes: Routes,
}

/// What `/readyz` asks: the database, and in a split gateway the upstreams.
#[async_trait]
pub trait Readiness: Send + Sync {
    /// `Err` names what is not ready.
    async fn check(&self) -> Result<(), String>;
    /// Fills gauges (pool sizes, upstream health) right before `/metrics` is rendered.
    fn report(&self, _metrics: &Metrics) {}
}

/// The HTTP shell every process serves its routes in (the monolith, the gateway and each
/// service alike): request ids, access log, metrics, CORS, rate limit, body limits, problem+json
/// for what no route serves, and the operations endpoints.
#[derive(Clone)]
pub struct HttpShell {
    metrics: web::Data<Metrics>,
    rate_limit: web::Data<AuthRateLimit>,
    body_limit: web::Data<BodyLimit>,
    body_deadline: web::Data<BodyDeadline>,
    readiness: web::Data<dyn Readiness>,
    trusted_proxies: web::Data<TrustedProxies>,
    cors_origins: Arc<Vec<String>>,
    /// Whether the public listener serves `/metrics` (not when it has a listener of its own).
    public_metrics: bool,
    /// A split service's: its answers tell the gateway in front what they depend on and what
    /// they changed (`edge_cache`).
    #[cfg(feature = "split")]
    behind_a_gateway: bool,
}

impl HttpShell {
    /// `body_timeout`: how long a request's body may take to arrive. Must run inside the tokio
    /// runtime (the rate limiter spawns its janitor).
    pub fn new(
        settings: &GatewaySettings,
        body_timeout: Duration,
        readiness: Arc<dyn Readiness>,
    ) -> Result<Self, RateLimitError> {
        Ok(Self {
            metrics: web::Data::new(Metrics::new()),
            rate_limit: web::Data::new(AuthRateLimit::new(
                settings.auth_rate_per_minute,
                settings.rate_limit_redis_url.as_deref(),
            )?),
            body_limit: web::Data::new(BodyLimit(settings.body_limit_bytes)),
            body_deadline: web::Data::new(BodyDeadline(body_timeout)),
            readiness: web::Data::from(readiness),
            trusted_proxies: web::Data::new(settings.trusted_proxies.clone()),
            cors_origins: Arc::new(settings.cors_allowed_origins.clone()),
            public_metrics: true,
            #[cfg(feature = "split")]
            behind_a_gateway: false,
        })
    }

    /// Makes the answers of a split service tell the gateway in front of it what they depend
    /// on and what they changed (see `edge_cache`).
    #[cfg(feature = "split")]
    pub fn behind_a_gateway(&mut self) {
        self.behind_a_gateway = true;
    }

    /// Serves `/metrics` on `listener` only, no longer on the public one: an Ingress in front of
    /// the public port then can not expose it.
    pub fn metrics_server(&mut self, listener: std::net::TcpListener) -> std::io::Result<Server> {
        self.public_metrics = false;
        let (metrics, readiness) = (self.metrics.clone(), self.readiness.clone());
        Ok(HttpServer::new(move || {
            App::new()
                .app_data(metrics.clone())
                .app_data(readiness.clone())
                .route("/metrics", web::get().to(render_metrics))
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                )
        })
        .workers(1)
        .listen(listener)?
        .run())
    }

    /// Adds collectors (say, the read caches') to this process's `/metrics`.
    pub fn register_metrics(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for collector in collectors {
            self.metrics.register(collector);
        }
    }

    /// The public application: `routes` mounted behind every gateway concern.
    pub fn app<F>(
        self,
        routes: F,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    >
    where
        F: FnOnce(&mut web::ServiceConfig),
    {
        let app = App::new()
            .app_data(self.metrics.clone())
            .app_data(self.rate_limit.clone())
            .app_data(self.body_limit.clone())
            .app_data(self.body_deadline.clone())
            .app_data(self.readiness.clone())
            .app_data(self.trusted_proxies.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                Problem::bad_request(format!("invalid query parameter: {err}")).into()
            }))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|_, _| Problem::not_found("no such resource").into()),
            )
            .configure(routes)
            .configure(operations)
            .configure(|cfg| {
                if self.public_metrics {
                    cfg.route("/metrics", web::get().to(render_metrics));
                }
            })
            .default_service(web::to(fallback));
        // Innermost: it reads what handlers attached to their answers.
        #[cfg(feature = "split")]
        let app = app.wrap(Condition::new(
            self.behind_a_gateway,
            from_fn(edge_cache::tell_the_gateway),
        ));
        app.wrap(from_fn(slow_clients::limit_body_time))
            .wrap(from_fn(rate_limit::limit_auth_requests))
            .wrap(Condition::new(
                !self.cors_origins.is_empty(),
                cors(&self.cors_origins),
            ))
            // Every policy above sees the path the router routes; metrics below count even
            // the requests refused for a path without a canonical form.
            .wrap(from_fn(canonical_path::canonicalize_request))
            .wrap(from_fn(crate::platform::compression::compress_responses))
            .wrap(from_fn(metrics::record_metrics))
            .wrap(from_fn(request_context::request_context))
    }
}

fn cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin();
    }
    origins
        .iter()
        .fold(cors, |cors, origin| cors.allowed_origin(origin))
}

/// `/healthz`, `/readyz`, `/api/openapi.json`, its browsable form `/api/docs` and the web app
/// (`/metrics` is mounted apart).
/// (Their paths are [`known_routes::OPERATIONS`].)
fn operations(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/api/openapi.json", web::get().to(openapi_json))
        .route("/api/docs", web::get().to(api_docs))
        .configure(web_app::routes);
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<dyn Readiness>) -> HttpResponse {
    match readiness.check().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(why) => {
            tracing::warn!(%why, "not ready");
            Problem::unavailable(format!("not ready: {why}"), 5).error_response()
        }
    }
}

async fn render_metrics(
    metrics: web::Data<Metrics>,
    readiness: web::Data<dyn Readiness>,
) -> HttpResponse {
    readiness.report(&metrics);
    metrics::text_response(metrics.render())
}

/// The document and the reference page never change in a running process: each is made, and
/// compressed, once.
async fn openapi_json() -> HttpResponse {
    static BODY: LazyLock<Arc<Encodings>> = LazyLock::new(|| {
        Encodings::fixed(serde_json::to_vec(&openapi_document()).expect("the document serializes"))
    });
    BODY.respond(HttpResponse::Ok().content_type(header::ContentType::json()))
}

async fn api_docs() -> HttpResponse {
    static BODY: LazyLock<Arc<Encodings>> =
        LazyLock::new(|| Encodings::fixed(api_reference::page().as_bytes()));
    BODY.respond(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                api_reference::CONTENT_SECURITY_POLICY.as_str(),
            ))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY")),
    )
}

/// What no route matched: a known path asked with a method it does not serve is 405; anything
/// else is proxied to another service when this process is a split gateway, otherwise 404.
async fn fallback(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Some(route) = KnownRoutes::of(&req)
        && !route.allows(req.method())
    {
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!(
                "{} is not served here; allowed: {}",
                req.method(),
                route.allow_header()
            ),
        )
        .error_response();
        if let Ok(allow) = HeaderValue::from_str(&route.allow_header()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return response;
    }
    #[cfg(feature = "split")]
    if let Some(worker) = req.app_data::<proxy::ProxyWorker>().cloned() {
        return proxy::proxy_request(req, payload, &worker).await;
    }
    let _ = payload;
    Problem::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}
