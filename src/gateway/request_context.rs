//! Request ids and the access log: every request gets an `X-Request-Id` (the caller's, when it
//! sent a sane one) and a tracing span carrying it and the W3C trace id, so every log line of
//! the request, in every process it touches, names them.
//!
//! Being the outermost layer, it also holds what every answer shares: `nosniff`; a request line
//! or header section too large for the contract refused (`414`, `431`) before anything reads it;
//! and every refusal as problem details, including those a library wrote in its own words (a
//! refused CORS preflight). Heads so large that the HTTP parser itself gives up (a URI over
//! 64 KiB, more than 96 headers, 128 KiB in all) are answered by actix before any of this runs.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};
use tracing::Instrument;

use super::{
    client_address::{ClientAddress, TrustedProxies},
    known_routes::route_label,
};
use crate::platform::{problem::Problem, telemetry, trace::TraceContext};

/// The longest request target (path and query) answered; longer is `414`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest header section answered (names, values and their separators); larger is `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The refusal of a request head larger than the contract serves, if it is one.
fn oversized(req: &ServiceRequest) -> Option<Problem> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request target exceeds {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (headers > MAX_HEADER_BYTES).then(|| {
        Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request-header-fields-too-large",
            format!("the request headers exceed {MAX_HEADER_BYTES} bytes"),
        )
    })
}

/// Whether an answer is a refusal that is not problem details yet (a library's own words).
fn needs_problem_body(response: &ServiceResponse<impl MessageBody>) -> bool {
    let status = response.status();
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    (status.is_client_error() || status.is_server_error()) && !problem
}

/// The same refusal as problem details, keeping the original's headers (`Vary`, `Allow`...).
fn as_problem<B>(response: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let status = response.status();
    let request = response.request();
    let preflight = request.method() == actix_web::http::Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN);
    let detail = if preflight {
        "this origin, method or header is not allowed to call the API (CORS)".to_owned()
    } else {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned()
    };
    let code = match status.as_u16() {
        400 => "bad-request",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "request-timeout",
        413 => "payload-too-large",
        414 => "uri-too-long",
        415 => "unsupported-media-type",
        431 => "request-header-fields-too-large",
        502 | 504 => "upstream-failed",
        503 => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "refused",
    };
    let mut problem = Problem::new(status, code, detail).error_response();
    for (name, value) in response.headers() {
        // The new body is neither the old one's coding nor the resource its validator named.
        if ![
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ETAG,
        ]
        .contains(name)
        {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    response.into_response(problem).map_into_right_body()
}

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
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // A v4 id from the thread's CSPRNG: `Uuid::new_v4` asks the OS for every one.
    let id = caller_id(&req).unwrap_or_else(|| {
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string()
    });
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
    let mut response = match oversized(&req) {
        Some(problem) => req
            .into_response(problem.error_response())
            .map_into_right_body(),
        None => {
            let response = context
                .scope(next.call(req).instrument(span.clone()))
                .await?;
            if needs_problem_body(&response) {
                as_problem(response)
            } else {
                response.map_into_left_body()
            }
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Named by route template, not path: span names stay few whatever ids are requested. A
    // proxied request matched no local route; the contract's routes name it.
    let request = response.request();
    let route = route_label(request);
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
