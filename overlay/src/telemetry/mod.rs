//! Tracing set-up shared by every binary: one subscriber with a log layer and, when the
//! OpenTelemetry environment names a collector, a span exporter.
//!
//! Logs: the filter comes from `SHIBAFU_LOG`, else `RUST_LOG`, else the binary's default; events
//! go to stderr as text (coloured only on a terminal) or as one JSON object a line.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, the
//! spans of the `shibafu*` crates at `info` and above are exported over OTLP/HTTP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or `http/json`) from a batch processor on its
//! own thread with a bounded queue (a full queue drops spans, never waits). The resource is
//! `service.name` (`OTEL_SERVICE_NAME`, else the binary's name), `host.name` where the binary
//! gives one, and `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_TRACES_SAMPLER` picks the sampler. Without
//! an endpoint no OpenTelemetry layer is installed at all.

mod config;
mod context;
mod export;
#[cfg(test)]
mod traced_tests;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use config::{from_env as otlp_from_env, ConfigError, HttpTarget, OtlpConfig, Protocol};
pub use context::{follow, request_span, Trace, TraceParent, TRACEPARENT};
pub use export::OtlpHttpExporter;

/// Environment variable read first for the log filter (`RUST_LOG` syntax).
pub const LOG_ENV: &str = "SHIBAFU_LOG";

/// Longest the exit of a binary waits for its last spans to be exported.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields, spans).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: use text or json")),
        }
    }
}

/// How a binary wants its telemetry.
#[derive(Debug, Clone)]
pub struct Telemetry {
    service: &'static str,
    default_filter: Option<&'static str>,
    targets: bool,
    format: LogFormat,
    host_name: Option<String>,
}

impl Telemetry {
    /// Telemetry of the binary `service` (`shibafu-agent`, ...), logging at `info` by default.
    pub fn new(service: &'static str) -> Telemetry {
        Telemetry {
            service,
            default_filter: Some("info"),
            targets: true,
            format: LogFormat::Text,
            host_name: None,
        }
    }

    /// Leave module paths out of log lines (for a tool talking to a person).
    pub fn without_targets(mut self) -> Telemetry {
        self.targets = false;
        self
    }

    /// Log nothing unless `SHIBAFU_LOG` or `RUST_LOG` asks for it (the CLI keeps its output
    /// clean). Spans are still exported when a collector is configured.
    pub fn quiet_by_default(mut self) -> Telemetry {
        self.default_filter = None;
        self
    }

    /// Write log lines in `format`.
    pub fn log_format(mut self, format: LogFormat) -> Telemetry {
        self.format = format;
        self
    }

    /// Name the host in the exported resource (`host.name`): agents give their node name.
    pub fn host_name(mut self, name: &str) -> Telemetry {
        self.host_name = Some(name.to_string());
        self
    }

    /// The service name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The filter to use: from the environment, else the default; `None` logs nothing.
    fn filter(&self) -> Option<EnvFilter> {
        for var in [LOG_ENV, "RUST_LOG"] {
            if let Ok(f) = EnvFilter::try_from_env(var) {
                return Some(f);
            }
        }
        self.default_filter.map(EnvFilter::new)
    }

    /// The log layer, if anything is to be logged.
    fn log_layer(&self) -> Option<Box<dyn Layer<Registry> + Send + Sync>> {
        let filter = self.filter()?;
        let base = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(self.targets);
        Some(match self.format {
            LogFormat::Text => base
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter)
                .boxed(),
            LogFormat::Json => base
                .json()
                .with_ansi(false)
                .with_current_span(true)
                .with_filter(filter)
                .boxed(),
        })
    }

    /// The exported resource: the service name, the host name, then `OTEL_RESOURCE_ATTRIBUTES`,
    /// and `OTEL_SERVICE_NAME` over all.
    fn resource(&self) -> Resource {
        let mut b = Resource::builder_empty().with_service_name(self.service);
        if let Some(h) = &self.host_name {
            b = b.with_attribute(KeyValue::new("host.name", h.clone()));
        }
        b = b.with_detector(Box::new(EnvResourceDetector::new()));
        if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|n| !n.trim().is_empty())
        {
            b = b.with_service_name(name);
        }
        b.build()
    }

    /// The tracer provider the environment asks for, if any; a bad setting is reported on
    /// stderr and leaves tracing off.
    fn provider(&self) -> Option<SdkTracerProvider> {
        let config = match otlp_from_env(|k| std::env::var(k).ok()) {
            Ok(c) => c?,
            Err(e) => {
                // The subscriber is not installed yet: this is the only way to say it.
                eprintln!("{}: traces not exported: {e}", self.service);
                return None;
            }
        };
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(OtlpHttpExporter::new(config))
                .with_resource(self.resource())
                .build(),
        )
    }

    /// Installs the global subscriber; keep the guard until the program ends (dropping it
    /// exports the last spans, waiting at most [`FLUSH_TIMEOUT`]). A second call (tests,
    /// embedded use) changes nothing.
    pub fn init(self) -> TelemetryGuard {
        let provider = self.provider();
        let otel = provider.as_ref().map(|p| {
            let spans = Targets::new().with_target("shibafu", Level::INFO);
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(self.service))
                .with_threads(false)
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_filter(spans)
        });
        let installed = tracing_subscriber::registry()
            .with(self.log_layer())
            .with(otel)
            .try_init()
            .is_ok();
        TelemetryGuard {
            provider: provider.filter(|_| installed),
        }
    }
}

/// Keeps the span exporter of [`Telemetry::init`]; dropping it exports what is left.
#[must_use = "dropping the guard stops exporting spans"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // A collector that is away loses these spans; the program exits on time anyway.
            let _ = p.shutdown_with_timeout(FLUSH_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_quiet_unless_asked_and_daemons_log_info() {
        let daemon = Telemetry::new("shibafu-agent");
        assert_eq!(daemon.service(), "shibafu-agent");
        let cli = Telemetry::new("shibafu").quiet_by_default();
        if std::env::var_os(LOG_ENV).is_none() && std::env::var_os("RUST_LOG").is_none() {
            assert!(cli.filter().is_none());
            assert!(cli.log_layer().is_none());
            assert_eq!(
                daemon.filter().map(|f| f.to_string()),
                Some("info".to_string())
            );
        }
    }

    #[test]
    fn the_resource_names_the_service_and_the_host() {
        if std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_some()
        {
            return;
        }
        let r = Telemetry::new("shibafu-agent")
            .host_name("node1")
            .resource();
        let get = |k: &'static str| r.get(&opentelemetry::Key::from_static_str(k));
        assert_eq!(
            get("service.name").map(|v| v.to_string()),
            Some("shibafu-agent".into())
        );
        assert_eq!(
            get("host.name").map(|v| v.to_string()),
            Some("node1".into())
        );
    }

    #[test]
    fn without_an_endpoint_no_exporter_is_made() {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        {
            return;
        }
        assert!(Telemetry::new("shibafu").provider().is_none());
    }
}
