//! The tracing subscriber, built once per process: log lines, and with the `otlp` feature and
//! `telemetry.otlp_endpoint` set, each request's spans exported over OTLP/HTTP so one request
//! shows as one trace across the gateway, events and users processes.

use std::{fmt::Write as _, io::IsTerminal};

use tracing::{Event, Level, Metadata, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    filter::{FilterExt, filter_fn},
    fmt,
    layer::{Context, Layer},
    prelude::*,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Pretty,
    Json,
}

/// The `log` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `rsvp=debug,actix_web=info`.
    pub level: LogLevel,
}

/// A valid `EnvFilter` directive.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(String);

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(directive: String) -> Result<Self, String> {
        EnvFilter::try_new(&directive)
            .map(|_| Self(directive))
            .map_err(|e| format!("not a valid filter directive: {e}"))
    }
}

/// The `telemetry` section: where this process's spans go.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TelemetrySettings {
    /// An OTLP/HTTP collector's base URL (`http://collector:4318`); spans go to
    /// `<endpoint>/v1/traces`. Empty: nothing is exported.
    #[serde(deserialize_with = "super::settings::optional")]
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` of this process's spans.
    pub service_name: String,
    /// How long finished spans wait, at most, to be sent together.
    pub export_delay_ms: u64,
}

/// The two OTLP/HTTP encodings, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    Protobuf,
    #[serde(rename = "http/json")]
    Json,
}

impl TelemetrySettings {
    /// Why `otlp_endpoint` can not be used, if it can not.
    pub fn endpoint_problem(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?;
        if !cfg!(feature = "otlp") {
            return Some("this build exports no traces: build with `--features otlp`".into());
        }
        match endpoint.parse::<actix_web::http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() =>
            {
                None
            }
            _ => Some(format!(
                "{endpoint:?}: expected an http(s) URL such as http://collector:4318"
            )),
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides `log.level` when set. A second call
/// (tests start many apps in one process) is a no-op. Fails only when the span exporter can
/// not be built.
pub fn init(settings: &LogSettings, telemetry: &TelemetrySettings) -> Result<(), String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level.0));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let output = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt::layer().boxed()
    };
    // Each layer filters for itself: `log.level` decides the log lines, not which spans are
    // exported, so a process logging only warnings still sends its request spans.
    let log_lines = filter.and(filter_fn(|meta| !is_http_layer_error(meta)));
    let logging = tracing_subscriber::registry()
        .with(output.with_filter(log_lines))
        .with(HttpLayerErrors.with_filter(filter_fn(is_http_layer_error)));
    // Only when exporting: an empty span layer would still enable every request span, which
    // `log.level=warn` otherwise leaves disabled (a quarter of /healthz's throughput).
    #[cfg(feature = "otlp")]
    if let Some(spans) = otlp::layer(telemetry)? {
        let _ = logging
            .with(spans.with_filter(filter_fn(is_exported)))
            .try_init();
        return Ok(());
    }
    #[cfg(not(feature = "otlp"))]
    let _ = telemetry;
    let _ = logging.try_init();
    Ok(())
}

/// Sends the spans still waiting, before the process exits.
pub fn flush() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
}

/// Makes `span` (a request's server span) a child of the caller's `traceparent` and returns the
/// trace id it is exported under; `None` when no spans are exported.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> Option<String> {
    #[cfg(feature = "otlp")]
    return otlp::continue_trace(span, traceparent);
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (span, traceparent);
        None
    }
}

/// Names a request's span once its route is known. The exported span is renamed directly: its
/// OpenTelemetry span exists by then (`continue_trace` made it), and a late `otel.name` field
/// would only reach the log line.
pub fn name_span(span: &tracing::Span, name: String) {
    #[cfg(feature = "otlp")]
    otlp::rename(span, name.clone());
    span.record("otel.name", name);
}

/// The `traceparent` naming the current span as the parent of an outgoing call; `None` when no
/// spans are exported.
pub fn current_traceparent() -> Option<String> {
    #[cfg(feature = "otlp")]
    return otlp::current_traceparent();
    #[cfg(not(feature = "otlp"))]
    None
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::{collections::HashMap, sync::OnceLock, time::Duration};

    use opentelemetry::{
        KeyValue,
        propagation::TextMapPropagator,
        trace::{TraceContextExt, TracerProvider as _},
    };
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::{
        Resource,
        propagation::TraceContextPropagator,
        trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider},
    };
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::{Layer, registry::LookupSpan};

    use super::{OtlpProtocol, TelemetrySettings};

    /// Set once spans are exported; flushed on exit.
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub fn layer<S>(settings: &TelemetrySettings) -> Result<Option<impl Layer<S>>, String>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return Ok(None);
        };
        if PROVIDER.get().is_some() {
            return Ok(None); // a second init in one process: the first subscriber stays
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_protocol(match settings.otlp_protocol {
                OtlpProtocol::Protobuf => Protocol::HttpBinary,
                OtlpProtocol::Json => Protocol::HttpJson,
            })
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(settings.export_delay_ms))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batches)
                    .build(),
            )
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("rsvp");
        let _ = PROVIDER.set(provider);
        Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
    }

    pub fn shutdown() {
        if let Some(provider) = PROVIDER.get()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("rsvp: spans not exported at exit: {e}");
        }
    }

    pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) -> Option<String> {
        PROVIDER.get()?;
        if let Some(traceparent) = traceparent {
            let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
            let parent = TraceContextPropagator::new().extract(&carrier);
            // A malformed header extracts as an empty context: the span starts a new trace.
            let _ = span.set_parent(parent);
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    }

    pub fn rename(span: &tracing::Span, name: String) {
        if PROVIDER.get().is_some() {
            span.context().span().update_name(name);
        }
    }

    pub fn current_traceparent() -> Option<String> {
        PROVIDER.get()?;
        let context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }
}

/// What becomes part of a trace: this crate's and the kit's spans down to INFO (the kit's
/// client span of a call to another process among them), and their warnings and errors (as
/// events of the span they happened in).
#[cfg(feature = "otlp")]
fn is_exported(meta: &Metadata<'_>) -> bool {
    (meta.target().starts_with("rsvp") || meta.target().starts_with("modkit"))
        && (*meta.level() <= Level::WARN || (meta.is_span() && *meta.level() <= Level::INFO))
}

/// actix-http's connection errors, logged at ERROR whoever caused them.
fn is_http_layer_error(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::ERROR && meta.target().starts_with("actix_http::h1")
}

/// actix-http logs a malformed request it answered 400 or 431 (a control byte in a header,
/// oversized headers, conflicting `Content-Length` and `Transfer-Encoding`) at ERROR, so any
/// client could page an operator. This layer logs those again at WARN, as the client's fault,
/// under `rsvp::http`; what actix-http reports of its own failures stays at ERROR.
struct HttpLayerErrors;

impl<S: Subscriber> Layer<S> for HttpLayerErrors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !is_http_layer_error(event.metadata()) {
            return;
        }
        let mut message = String::new();
        event.record(&mut |field: &Field, value: &dyn std::fmt::Debug| {
            if field.name() == "message" {
                let _ = write!(message, "{value:?}");
            }
        });
        if message.starts_with("stream error") {
            tracing::warn!(target: "rsvp::http", error = %message, "malformed request refused");
        } else {
            tracing::error!(target: "rsvp::http", error = %message, "HTTP connection failed");
        }
    }
}
