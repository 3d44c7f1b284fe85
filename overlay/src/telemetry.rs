//! Tracing set-up shared by every binary: one subscriber, layered so exporters (OpenTelemetry)
//! and a metrics registry can be added in one place.
//!
//! The filter comes from `SHIBAFU_LOG`, else `RUST_LOG`, else the binary's default; events go
//! to stderr, coloured only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Environment variable read first for the log filter (`RUST_LOG` syntax).
pub const LOG_ENV: &str = "SHIBAFU_LOG";

/// How a binary wants its telemetry.
#[derive(Debug, Clone)]
pub struct Telemetry {
    service: &'static str,
    default_filter: Option<&'static str>,
    targets: bool,
}

impl Telemetry {
    /// Telemetry of the binary `service` (`shibafu-agent`, ...), logging at `info` by default.
    pub fn new(service: &'static str) -> Telemetry {
        Telemetry {
            service,
            default_filter: Some("info"),
            targets: true,
        }
    }

    /// Leave module paths out of log lines (for a tool talking to a person).
    pub fn without_targets(mut self) -> Telemetry {
        self.targets = false;
        self
    }

    /// Log nothing unless `SHIBAFU_LOG` or `RUST_LOG` asks for it (the CLI keeps its output
    /// clean).
    pub fn quiet_by_default(mut self) -> Telemetry {
        self.default_filter = None;
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

    /// Installs the global subscriber. A second call (tests, embedded use) changes nothing.
    pub fn init(self) {
        let Some(filter) = self.filter() else {
            return;
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(self.targets);
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
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
            assert_eq!(
                daemon.filter().map(|f| f.to_string()),
                Some("info".to_string())
            );
        }
    }
}
