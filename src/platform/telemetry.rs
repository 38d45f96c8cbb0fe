//! The tracing subscriber, built once per process.

use std::{fmt::Write as _, io::IsTerminal};

use tracing::{Event, Level, Metadata, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    filter::filter_fn,
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

/// Installs the global subscriber; `RUST_LOG` overrides `log.level` when set. A second call
/// (tests start many apps in one process) is a no-op.
pub fn init(settings: &LogSettings) {
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
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(output.with_filter(filter_fn(|meta| !is_http_layer_error(meta))))
        .with(HttpLayerErrors)
        .try_init();
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
