//! Services: a name balanced over the healthy instances (endpoints naming the service) of one
//! network, with an optional health check; and the health records nodes publish for their
//! instances.

use crate::telemetry::Trace;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{validate_name, Endpoint, SCHEMA_VERSION};

/// Highest instance weight.
pub const MAX_WEIGHT: u32 = 1000;
/// Shortest health-check interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Output of a command check kept for `service inspect`, in bytes.
pub const MAX_OUTPUT: usize = 4096;

/// How a service's instances are ordered in answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbPolicy {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin: each instance in proportion to its weight.
    Weighted,
    /// The instance with the fewest established connections first (ties in turn).
    LeastConnections,
}

/// Transport of the service port (SRV's `_<proto>` label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// What the service name answers when no instance is healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllUnhealthy {
    /// No address (NOERROR, empty answer).
    #[default]
    FailClosed,
    /// Every running instance, with the answer marked (an EDNS extended error).
    FailOpen,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Probe {
    /// A TCP connect to the instance's address.
    Tcp {
        /// Port.
        port: u16,
    },
    /// An HTTP GET; 2xx and 3xx are healthy.
    Http {
        /// Port.
        port: u16,
        /// Path, starting with `/`.
        path: String,
    },
    /// A command inside the instance's namespaces; exit 0 is healthy.
    Cmd {
        /// The command and its arguments.
        argv: Vec<String>,
    },
}

/// A health check and its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What is checked.
    pub probe: Probe,
    /// Time between checks, in milliseconds (default 1000).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Time a check may take, in milliseconds (default 500).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive successes that make an instance healthy (default 2).
    #[serde(default = "default_count")]
    pub rise: u32,
    /// Consecutive failures that make it unhealthy (default 2).
    #[serde(default = "default_count")]
    pub fall: u32,
    /// Time after the start during which failures do not count, in milliseconds (default 0).
    #[serde(default)]
    pub start_period_ms: u64,
}

fn default_interval() -> u64 {
    1000
}

fn default_timeout() -> u64 {
    500
}

fn default_count() -> u32 {
    2
}

impl HealthCheck {
    /// A check of `probe` with the default timing: every 1 s, 500 ms timeout, rise 2, fall 2.
    pub fn new(probe: Probe) -> HealthCheck {
        HealthCheck {
            probe,
            interval_ms: default_interval(),
            timeout_ms: default_timeout(),
            rise: default_count(),
            fall: default_count(),
            start_period_ms: 0,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ServiceError> {
        match &self.probe {
            Probe::Tcp { port } | Probe::Http { port, .. } if *port == 0 => {
                return Err(ServiceError::Port(0))
            }
            Probe::Http { path, .. } if !path.starts_with('/') => {
                return Err(ServiceError::HttpPath(path.clone()))
            }
            Probe::Cmd { argv } if argv.is_empty() || argv[0].is_empty() => {
                return Err(ServiceError::EmptyCommand)
            }
            _ => {}
        }
        if self.interval_ms < MIN_INTERVAL.as_millis() as u64 {
            return Err(ServiceError::Interval(self.interval_ms));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(ServiceError::Timeout {
                timeout_ms: self.timeout_ms,
                interval_ms: self.interval_ms,
            });
        }
        if self.rise == 0 || self.fall == 0 {
            return Err(ServiceError::Count);
        }
        Ok(())
    }
}

/// Some fields of a health check (the `--health-*` flags given): a new check when it names a
/// probe, else changes to an existing one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// What to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Interval in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Successes to become healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Failures to become unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Start period in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ms: Option<u64>,
}

impl HealthSpec {
    /// Whether no field is given.
    pub fn is_empty(&self) -> bool {
        *self == HealthSpec::default()
    }

    /// `base` changed by this spec (a probe given starts from the defaults), validated; `base`
    /// itself when the spec is empty.
    pub fn apply_to(
        &self,
        base: Option<&HealthCheck>,
    ) -> Result<Option<HealthCheck>, ServiceError> {
        if self.is_empty() {
            return Ok(base.cloned());
        }
        let mut check = match (&self.probe, base) {
            (Some(p), _) => HealthCheck {
                probe: p.clone(),
                ..base.cloned().unwrap_or_else(|| HealthCheck::new(p.clone()))
            },
            (None, Some(b)) => b.clone(),
            (None, None) => return Err(ServiceError::NoProbe),
        };
        let set = |v: Option<u64>, field: &mut u64| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(self.interval_ms, &mut check.interval_ms);
        set(self.timeout_ms, &mut check.timeout_ms);
        set(self.start_period_ms, &mut check.start_period_ms);
        if let Some(r) = self.rise {
            check.rise = r;
        }
        if let Some(f) = self.fall {
            check.fall = f;
        }
        if self.timeout_ms.is_none() {
            // A short interval without a timeout of its own: the timeout shrinks with it.
            check.timeout_ms = check.timeout_ms.min(check.interval_ms);
        }
        check.validate()?;
        Ok(Some(check))
    }
}

/// A service of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Schema version.
    pub schema: u32,
    /// Network name.
    pub network: String,
    /// Service name, a DNS label: `<name>.<zone>` answers its instances.
    pub name: String,
    /// Order of the instances in answers.
    #[serde(default)]
    pub lb: LbPolicy,
    /// Service port (SRV), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Name of the port in SRV (`_<port-name>._<protocol>.<service>.<zone>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Transport of the port.
    #[serde(default)]
    pub protocol: Protocol,
    /// What the name answers when no instance is healthy.
    #[serde(default)]
    pub all_unhealthy: AllUnhealthy,
    /// The health check of its instances (each may override it); none = healthy while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// The trace context of the change that wrote this value (W3C `traceparent`), so watchers
    /// continue that trace; absent in values written without tracing.
    #[serde(default, skip_serializing_if = "Trace::is_none")]
    pub trace: Trace,
}

impl Service {
    /// A service with the defaults of `service create`: round robin, no port, TCP, fail-closed,
    /// no check.
    pub fn new(network: &str, name: &str) -> Service {
        Service {
            schema: SCHEMA_VERSION,
            network: network.to_string(),
            name: name.to_string(),
            lb: LbPolicy::default(),
            port: None,
            port_name: None,
            protocol: Protocol::default(),
            all_unhealthy: AllUnhealthy::default(),
            health: None,
            trace: Trace::NONE,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ServiceError> {
        validate_name(&self.name).map_err(|_| ServiceError::Name(self.name.clone()))?;
        if self.port == Some(0) {
            return Err(ServiceError::Port(0));
        }
        if let Some(p) = &self.port_name {
            validate_name(p).map_err(|_| ServiceError::PortName(p.clone()))?;
        }
        if self.port_name.is_some() && self.port.is_none() {
            return Err(ServiceError::PortNameWithoutPort);
        }
        if let Some(h) = &self.health {
            h.validate()?;
        }
        Ok(())
    }

    /// The SRV owner's first label: `--port-name`, else `port<N>`; `None` without a port.
    pub fn srv_label(&self) -> Option<String> {
        let port = self.port?;
        Some(
            self.port_name
                .clone()
                .unwrap_or_else(|| format!("port{port}")),
        )
    }
}

/// Which of a service's instances DNS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Those marked true: with a health check (their own or the service's) once healthy,
    /// without one while they run. At least one is.
    Healthy(Vec<bool>),
    /// None qualifies and the service fails open: every instance, the answer marked.
    FailOpen,
    /// None qualifies and the service fails closed: none.
    FailClosed,
}

impl Answered {
    /// Whether instance `i` is answered.
    pub fn is_answered(&self, i: usize) -> bool {
        match self {
            Answered::Healthy(v) => v.get(i).copied().unwrap_or(false),
            Answered::FailOpen => true,
            Answered::FailClosed => false,
        }
    }
}

/// Which of a service's `instances` (with the health their node reported) DNS answers.
pub fn answered(service: &Service, instances: &[(&Endpoint, Option<&Health>)]) -> Answered {
    let healthy: Vec<bool> = instances
        .iter()
        .map(|(e, h)| {
            let checked = e.health.is_some() || service.health.is_some();
            !checked || h.is_some_and(|h| h.state == HealthState::Healthy)
        })
        .collect();
    if healthy.iter().any(|h| *h) {
        Answered::Healthy(healthy)
    } else if service.all_unhealthy == AllUnhealthy::FailOpen {
        Answered::FailOpen
    } else {
        Answered::FailClosed
    }
}

/// The name /etc/services gives `port` over `protocol`, when it is a valid DNS label.
pub fn port_name_in(etc_services: &str, port: u16, protocol: Protocol) -> Option<String> {
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let wanted = format!("{port}/{proto}");
    etc_services
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            (words.next()? == wanted).then(|| name.to_ascii_lowercase())
        })
        .find(|name| validate_name(name).is_ok())
}

/// Checks an instance weight (1..=1000).
pub fn validate_weight(weight: u32) -> Result<(), ServiceError> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(ServiceError::Weight(weight))
    }
}

/// Why a service, check or weight is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Not a DNS label.
    #[error("invalid service name {0:?}: use 1-63 lowercase letters, digits or '-'")]
    Name(String),
    /// Port 0.
    #[error("invalid port {0}: use 1-65535")]
    Port(u32),
    /// A port name that is not a DNS label.
    #[error("invalid port name {0:?}: use 1-63 lowercase letters, digits or '-'")]
    PortName(String),
    /// A port name for a service without a port.
    #[error("--port-name needs --port")]
    PortNameWithoutPort,
    /// A weight outside 1..=1000.
    #[error("invalid weight {0}: use 1-1000")]
    Weight(u32),
    /// An HTTP check path without the leading slash.
    #[error(
        "invalid health-check path {0:?}: it must start with '/' (PORT/PATH, e.g. 80/healthz)"
    )]
    HttpPath(String),
    /// A command check without a command.
    #[error("--health-cmd needs a command")]
    EmptyCommand,
    /// An interval below 100 ms.
    #[error("health-check interval {0} ms is below 100 ms")]
    Interval(u64),
    /// A timeout of zero or longer than the interval.
    #[error("health-check timeout {timeout_ms} ms must be above 0 and at most the interval ({interval_ms} ms)")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
        /// The interval.
        interval_ms: u64,
    },
    /// A rise or fall of zero.
    #[error("health-check rise and fall must be at least 1")]
    Count,
    /// Check timing without a check to apply it to.
    #[error("no health check to change: give --health-tcp, --health-http or --health-cmd")]
    NoProbe,
}

/// Where an instance's health stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Checked but not yet healthy `rise` times (not answered).
    #[default]
    Starting,
    /// Answered.
    Healthy,
    /// Failed `fall` times in a row (not answered).
    Unhealthy,
}

/// The health of one service instance, published by its node under the node lease when it
/// changes (state, or the count of established connections), not after every probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Schema version.
    pub schema: u32,
    /// Network name.
    pub network: String,
    /// Endpoint id (the instance's name).
    pub endpoint: String,
    /// Node that checks it (its own).
    pub node: String,
    /// Current state.
    pub state: HealthState,
    /// Unix time in milliseconds of the last state change.
    pub since_ms: u64,
    /// Unix time in milliseconds of the check that produced this record.
    pub checked_ms: u64,
    /// What the last check said (the first 4 KiB of a command's output, or an error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Established TCP connections to the service port, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_validated_with_clear_reasons() {
        let mut c = HealthCheck::new(Probe::Http {
            port: 80,
            path: "healthz".into(),
        });
        assert_eq!(c.validate(), Err(ServiceError::HttpPath("healthz".into())));
        c.probe = Probe::Tcp { port: 0 };
        assert_eq!(c.validate(), Err(ServiceError::Port(0)));
        c.probe = Probe::Tcp { port: 80 };
        c.interval_ms = 50;
        assert_eq!(c.validate(), Err(ServiceError::Interval(50)));
        c.interval_ms = 100;
        c.timeout_ms = 200;
        assert!(matches!(c.validate(), Err(ServiceError::Timeout { .. })));
        c.timeout_ms = 100;
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(validate_weight(0), Err(ServiceError::Weight(0)));
        assert_eq!(validate_weight(1001), Err(ServiceError::Weight(1001)));
        assert_eq!(validate_weight(1000), Ok(()));
        let mut s = Service::new("frontend", "web");
        s.port_name = Some("http".into());
        assert_eq!(s.validate(), Err(ServiceError::PortNameWithoutPort));
        s.port = Some(80);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.srv_label().as_deref(), Some("http"));
        s.port_name = None;
        assert_eq!(s.srv_label().as_deref(), Some("port80"));
    }

    #[test]
    fn health_flags_start_a_check_or_change_the_one_there() {
        let tcp = HealthSpec {
            probe: Some(Probe::Tcp { port: 80 }),
            interval_ms: Some(200),
            ..HealthSpec::default()
        };
        let check = tcp.apply_to(None).expect("valid").expect("a check");
        assert_eq!(
            (check.interval_ms, check.timeout_ms, check.rise),
            (200, 200, 2)
        );
        let too_slow = HealthSpec {
            timeout_ms: Some(300),
            ..tcp.clone()
        };
        assert!(matches!(
            too_slow.apply_to(None),
            Err(ServiceError::Timeout { .. })
        ));
        let slower = HealthSpec {
            fall: Some(5),
            ..HealthSpec::default()
        };
        let changed = slower.apply_to(Some(&check)).expect("valid").expect("kept");
        assert_eq!(
            (changed.probe.clone(), changed.fall),
            (check.probe.clone(), 5)
        );
        assert_eq!(slower.apply_to(None), Err(ServiceError::NoProbe));
        assert_eq!(
            HealthSpec::default().apply_to(Some(&check)),
            Ok(Some(check))
        );
    }

    #[test]
    fn port_names_come_from_etc_services() {
        let text =
            "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\ndomain 53/udp\nBad_Name 99/tcp\n";
        assert_eq!(
            port_name_in(text, 80, Protocol::Tcp).as_deref(),
            Some("http")
        );
        assert_eq!(
            port_name_in(text, 53, Protocol::Udp).as_deref(),
            Some("domain")
        );
        assert_eq!(port_name_in(text, 53, Protocol::Tcp), None);
        assert_eq!(
            port_name_in(text, 99, Protocol::Tcp),
            None,
            "not a DNS label"
        );
    }

    #[test]
    fn unhealthy_instances_are_answered_only_under_fail_open() {
        let e1 = Endpoint::new("f", "a", "n1", "10.0.0.2".parse().expect("ip"));
        let e2 = Endpoint::new("f", "b", "n1", "10.0.0.3".parse().expect("ip"));
        let h = |name: &str, state| Health {
            schema: SCHEMA_VERSION,
            network: "f".into(),
            endpoint: name.into(),
            node: "n1".into(),
            state,
            since_ms: 0,
            checked_ms: 0,
            output: String::new(),
            connections: None,
        };
        let mut s = Service::new("f", "web");
        let both = [(&e1, None), (&e2, None)];
        assert_eq!(answered(&s, &both), Answered::Healthy(vec![true, true]));
        s.health = Some(HealthCheck::new(Probe::Tcp { port: 80 }));
        let up = h("a", HealthState::Healthy);
        let down = h("b", HealthState::Unhealthy);
        let one = [(&e1, Some(&up)), (&e2, Some(&down))];
        assert_eq!(answered(&s, &one), Answered::Healthy(vec![true, false]));
        let none = [(&e1, None), (&e2, Some(&down))];
        assert_eq!(answered(&s, &none), Answered::FailClosed);
        assert!(!answered(&s, &none).is_answered(0));
        s.all_unhealthy = AllUnhealthy::FailOpen;
        assert_eq!(answered(&s, &none), Answered::FailOpen);
        assert!(answered(&s, &none).is_answered(1));
    }
}
