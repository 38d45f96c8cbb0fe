//! Request ids and the access log: every request gets an `X-Request-Id` (the caller's, when it
//! sent a sane one) and a tracing span carrying it and the W3C trace id, so every log line of
//! the request, in every process it touches, names them.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web,
};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    client_address::{ClientAddress, TrustedProxies},
    known_routes::KnownRoutes,
};
use crate::platform::{telemetry, trace::TraceContext};

/// The request id header, echoed on every response and passed to upstreams.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The id of the current request, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Accepts ids of up to 128 visible ASCII characters; anything else is replaced.
fn caller_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_owned())
}

/// The request's client as the trusted proxies (if any) tell it; `None` only for requests that
/// did not come over a socket (unit tests).
fn client_address(req: &ServiceRequest) -> Option<ClientAddress> {
    let peer = req.peer_addr()?.ip();
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let trusted = req.app_data::<web::Data<TrustedProxies>>();
    Some(match trusted {
        Some(trusted) => trusted.resolve(peer, req.headers(), scheme),
        None => TrustedProxies::default().resolve(peer, req.headers(), scheme),
    })
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = caller_id(&req).unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let client = client_address(&req);
    let traceparent = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let mut context = TraceContext::new(id.clone(), traceparent);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        method = %req.method(),
        path = %req.path(),
        client_ip = client.as_ref().map(|c| tracing::field::display(c.ip)),
        otel.kind = "server",
        otel.name = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(exported) = telemetry::continue_trace(&span, traceparent) {
        context.trace_id = exported;
    }
    span.record("trace_id", tracing::field::display(&context.trace_id));
    if let Some(client) = client {
        req.extensions_mut().insert(client);
    }
    let started = Instant::now();
    let mut response = context
        .scope(next.call(req).instrument(span.clone()))
        .await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Named by route template, not path: span names stay few whatever ids are requested. A
    // proxied request matched no local route; the contract's routes name it.
    let request = response.request();
    let route = request.match_pattern().or_else(|| {
        KnownRoutes::get()
            .find(request.path())
            .map(|known| known.pattern().to_owned())
    });
    let method = request.method().as_str();
    telemetry::name_span(
        &span,
        match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        },
    );
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    span.in_scope(|| {
        // 503 is an expected answer (a dependency down, not ready yet); other 5xx are bugs.
        if status >= 500 && status != 503 {
            tracing::error!(status, latency_ms, "request finished");
        } else if status == 503 {
            tracing::warn!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    });
    Ok(response)
}
