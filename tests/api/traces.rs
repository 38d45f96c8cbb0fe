//! Traces over OTLP: with `telemetry.otlp_endpoint` set, one request through the public entry
//! is one trace, its spans exported by every process it crossed, each process's spans hanging
//! under its caller's. The collector is a real OTLP/HTTP receiver in the test; the processes are
//! the real binaries (the monolith too, as `rsvp`), so the spans cross real process boundaries.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    backend_tests,
    helpers::{Backend, TestApp, Topology, topology},
};

backend_tests!(one_request_is_one_trace_across_processes);

/// OTLP's `SPAN_KIND_SERVER` and `SPAN_KIND_CLIENT`.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i64,
}

/// An OTLP/HTTP receiver (the JSON encoding) keeping every span it is sent.
struct Collector {
    address: String,
    spans: Arc<Mutex<Vec<Span>>>,
    server: actix_web::dev::ServerHandle,
}

impl Collector {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let received = spans.clone();
        let server = HttpServer::new(move || {
            let received = received.clone();
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let received = received.clone();
                    async move {
                        let Ok(export) = serde_json::from_slice::<Value>(&body) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        received.lock().unwrap().extend(spans_of(&export));
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body("{}")
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let address = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            address,
            spans,
            server: handle,
        }
    }

    fn trace(&self, trace_id: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// The spans of one `ExportTraceServiceRequest`, each with its process's `service.name`.
fn spans_of(export: &Value) -> Vec<Span> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                found.push(Span {
                    service: service.clone(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    name: text(&span["name"]),
                    kind: span["kind"].as_i64().unwrap_or_default(),
                });
            }
        }
    }
    found
}

fn hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

async fn one_request_is_one_trace_across_processes(backend: Backend) {
    let collector = Collector::start().await;
    // Caches off: the event's organiser name must come from the users module on this request.
    let app = TestApp::spawn_processes(
        backend,
        &[
            ("telemetry.otlp_endpoint", collector.address.as_str()),
            ("telemetry.otlp_protocol", "http/json"),
            ("telemetry.export_delay_ms", "50"),
            ("cache.enabled", "false"),
        ],
    )
    .await;
    let organiser = app.user().await;
    let event = app.event_id(&organiser, 5).await;

    // The caller's own trace: every span of the request must join it.
    let (trace_id, caller_span) = (hex(16), hex(8));
    let response = app
        .client
        .get(app.url(&format!("/api/events/{event}")))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Monolith: one process. Split: gateway → events → users. Mixed with the gateway hosting
    // users: the events service calls back into it (a third server span, in the gateway
    // again); hosting events: the gateway's events module calls the users service.
    let (processes, server_spans): (&[&str], usize) = match topology() {
        Topology::Monolith => (&["rsvp"], 1),
        Topology::Split => (&["rsvp-gateway", "rsvp-events", "rsvp-users"], 3),
        Topology::Mixed("users") => (&["rsvp-gateway", "rsvp-events"], 3),
        Topology::Mixed("events") => (&["rsvp-gateway", "rsvp-users"], 2),
        // A module the request does not cross, in the gateway: as in the split.
        Topology::Mixed(_) => (&["rsvp-gateway", "rsvp-events", "rsvp-users"], 3),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = collector.trace(&trace_id);
        let servers = spans.iter().filter(|s| s.kind == SERVER).count();
        if servers >= server_spans || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let described = format!("{spans:#?}");

    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        processes.iter().copied().collect(),
        "the processes that exported spans of the trace: {described}"
    );
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), server_spans, "server spans: {described}");

    // One tree: the entry's server span hangs under the caller's span, every other span under a
    // span of the same trace.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == caller_span)
        .collect();
    assert_eq!(roots.len(), 1, "one span under the caller's: {described}");
    assert_eq!(roots[0].kind, SERVER, "{described}");
    assert_eq!(roots[0].service, processes[0], "{described}");
    assert_eq!(roots[0].name, "GET /api/events/{id}", "{described}");
    for span in spans.iter().filter(|s| s.parent_span_id != caller_span) {
        assert!(
            ids.contains(span.parent_span_id.as_str()),
            "{} of {} has a parent outside the trace: {described}",
            span.name,
            span.service
        );
    }
    // Each process entered after the first was entered by a client span of its caller.
    for server in servers.iter().filter(|s| s.parent_span_id != caller_span) {
        let parent = spans
            .iter()
            .find(|s| s.span_id == server.parent_span_id)
            .unwrap();
        assert_eq!(parent.kind, CLIENT, "{described}");
    }
    collector.server.stop(false).await;
}
