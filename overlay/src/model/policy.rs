//! Network policies: rules that allow or deny connections to (ingress) or from (egress) the
//! endpoints a policy selects, by peer, ports and protocol. What a policy means for a given
//! connection is decided by one pure function (`overlay::policy`); this module is the schema and
//! the syntax `PEER[:PORTS][/PROTO]` of the command line.

use crate::telemetry::Trace;
use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{validate_name, SCHEMA_VERSION};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the connection through (and, for egress or ingress, isolate the selected endpoints).
    Allow,
    /// Block the connection; a deny always wins.
    Deny,
}

/// Which side of the selected endpoints a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Connections to them.
    Ingress,
    /// Connections from them.
    Egress,
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Peer {
    /// Every endpoint of a network.
    Network(String),
    /// Addresses in a CIDR (endpoints or anything outside the cluster).
    Cidr(IpNet),
    /// The instances of a service (on any network).
    Service(String),
    /// Every interface of a container or attachment of that name.
    Container(String),
    /// Anything.
    Any,
}

/// Transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default when ports are given).
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6 (no ports).
    Icmp,
    /// Any protocol (the default without ports).
    Any,
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (equal to `from` for one port).
    pub to: u16,
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Allow or deny.
    pub action: Action,
    /// Ingress or egress.
    pub direction: Direction,
    /// The other end.
    pub peer: Peer,
    /// Ports (none: every port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Protocol.
    pub proto: Proto,
}

/// A policy: rules about the endpoints of one network (or of one service on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Schema version.
    pub schema: u32,
    /// Unique name, a DNS label.
    pub name: String,
    /// The network whose endpoints it selects.
    pub network: String,
    /// Only the instances of this service on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its rules, in the order given.
    pub rules: Vec<Rule>,
    /// The trace context of the change that wrote this value (W3C `traceparent`), so watchers
    /// continue that trace; absent in values written without tracing.
    #[serde(default, skip_serializing_if = "Trace::is_none")]
    pub trace: Trace,
}

/// What one node's rules of a policy matched: written by the node's agent under its lease when
/// the figures change, summed over nodes by `shibafu network policy inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounters {
    /// Schema version.
    pub schema: u32,
    /// The policy.
    pub policy: String,
    /// The node that counted.
    pub node: String,
    /// Per rule, in the policy's order: packets the rule matched (an allow rule let them
    /// through, a deny rule dropped them). Only the first packets of connections are counted:
    /// replies and the rest of a passed connection skip the rules.
    pub rules: Vec<u64>,
    /// Packets dropped because the policy isolates its endpoints and no allow rule matched.
    pub isolation_dropped: u64,
}

/// Why a policy or a rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A name that is not a DNS label.
    #[error("invalid {what} name {name:?}: use 1-63 lowercase letters, digits or '-'")]
    Name {
        /// What was named.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A rule that cannot be read.
    #[error("invalid rule {rule:?}: {why}; write PEER[:PORTS][/PROTO], e.g. backend:5432, 10.0.0.0/8:80,443/tcp, service:web, any")]
    Syntax {
        /// The rule as written.
        rule: String,
        /// What is wrong.
        why: String,
    },
    /// Port 0.
    #[error("invalid port 0 in {0:?}: use 1-65535")]
    PortZero(String),
    /// A range whose end is before its start.
    #[error("port range {from}-{to} is upside down; write {to}-{from}")]
    UpsideDown {
        /// Its start.
        from: u16,
        /// Its end.
        to: u16,
    },
    /// Ports with ICMP.
    #[error("icmp has no ports: drop the ports or use tcp/udp")]
    IcmpPorts,
    /// A policy without rules.
    #[error("policy {0:?} has no rules: give at least one --allow-/--deny- flag")]
    NoRules(String),
}

impl Policy {
    /// Checks names, ports and protocols (not whether the networks and peers exist: the
    /// coordinator does that against the cluster).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let name = |what, n: &str| {
            validate_name(n).map_err(|_| PolicyError::Name {
                what,
                name: n.to_string(),
            })
        };
        name("policy", &self.name)?;
        name("network", &self.network)?;
        if let Some(s) = &self.service {
            name("service", s)?;
        }
        if self.rules.is_empty() {
            return Err(PolicyError::NoRules(self.name.clone()));
        }
        for r in &self.rules {
            r.validate()?;
        }
        Ok(())
    }

    /// A policy of the current schema.
    pub fn new(name: &str, network: &str, rules: Vec<Rule>) -> Policy {
        Policy {
            schema: SCHEMA_VERSION,
            name: name.to_string(),
            network: network.to_string(),
            service: None,
            rules,
            trace: Trace::NONE,
        }
    }
}

impl Rule {
    /// Checks the peer's names, the ports and the protocol.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match &self.peer {
            Peer::Network(n) | Peer::Service(n) | Peer::Container(n) => {
                validate_name(n).map_err(|_| PolicyError::Name {
                    what: "peer",
                    name: n.clone(),
                })?
            }
            Peer::Cidr(_) | Peer::Any => {}
        }
        for p in &self.ports {
            if p.from == 0 {
                return Err(PolicyError::PortZero(p.to_string()));
            }
            if p.to < p.from {
                return Err(PolicyError::UpsideDown {
                    from: p.from,
                    to: p.to,
                });
            }
        }
        if self.proto == Proto::Icmp && !self.ports.is_empty() {
            return Err(PolicyError::IcmpPorts);
        }
        Ok(())
    }

    /// Reads `PEER[:PORTS][/PROTO]` (the value of `--allow-ingress-from` and its kin) as a rule
    /// of `action` and `direction`.
    pub fn parse(action: Action, direction: Direction, text: &str) -> Result<Rule, PolicyError> {
        let syntax = |why: &str| PolicyError::Syntax {
            rule: text.to_string(),
            why: why.to_string(),
        };
        let (rest, proto) = match text.rsplit_once('/') {
            Some((r, p)) if p.parse::<Proto>().is_ok() => (r, p.parse::<Proto>().ok()),
            _ => (text, None),
        };
        let (peer, ports) = split_peer(rest).map_err(|why| syntax(&why))?;
        let ports = match ports {
            Some(p) => parse_ports(p)?,
            None => Vec::new(),
        };
        let proto = proto.unwrap_or(if ports.is_empty() {
            Proto::Any
        } else {
            Proto::Tcp
        });
        let rule = Rule {
            action,
            direction,
            peer,
            ports,
            proto,
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// Splits `PEER[:PORTS]`: names take an optional `:PORTS`; a CIDR's ports follow its prefix
/// length (`10.0.0.0/8:80`, `fd00::/64:443`).
fn split_peer(text: &str) -> Result<(Peer, Option<&str>), String> {
    if text.is_empty() {
        return Err("no peer".into());
    }
    if let Some((net, len_and_ports)) = text.split_once('/') {
        let (len, ports) = match len_and_ports.split_once(':') {
            Some((l, p)) => (l, Some(p)),
            None => (len_and_ports, None),
        };
        let cidr: IpNet = format!("{net}/{len}")
            .parse()
            .map_err(|_| format!("{net}/{len} is not a CIDR"))?;
        if cidr.trunc() != cidr {
            return Err(format!(
                "{cidr} has host bits set: did you mean {}?",
                cidr.trunc()
            ));
        }
        return Ok((Peer::Cidr(cidr), ports));
    }
    let (head, ports) = match text.rsplit_once(':') {
        Some((h, p))
            if p.chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-') =>
        {
            (h, Some(p))
        }
        _ => (text, None),
    };
    let peer = match head.split_once(':') {
        Some(("service", n)) => Peer::Service(n.to_string()),
        Some(("container", n)) => Peer::Container(n.to_string()),
        Some((kind, rest)) if validate_name(kind).is_ok() && !rest.contains(':') => {
            return Err(format!(
                "{rest:?} is not a port list (5432, 80,443, 8000-8100), and {kind:?} is not a peer kind (service:NAME, container:NAME)"
            ))
        }
        Some((kind, _)) => {
            return Err(format!("unknown peer kind {kind:?} (service:NAME, container:NAME)"))
        }
        None if head == "any" => Peer::Any,
        None => Peer::Network(head.to_string()),
    };
    Ok((peer, ports))
}

/// Reads `5432`, `80,443` or `8000-8100` (and lists of ranges).
fn parse_ports(text: &str) -> Result<Vec<PortRange>, PolicyError> {
    let port = |s: &str| -> Result<u16, PolicyError> {
        s.parse::<u16>().map_err(|_| PolicyError::Syntax {
            rule: text.to_string(),
            why: format!("{s:?} is not a port (1-65535)"),
        })
    };
    text.split(',')
        .map(|part| {
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(part)?;
                    (p, p)
                }
            };
            Ok(PortRange { from, to })
        })
        .collect()
}

impl FromStr for Proto {
    type Err = String;

    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            "any" => Ok(Proto::Any),
            other => Err(format!("unknown protocol {other:?} (tcp, udp, icmp, any)")),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Network(n) => write!(f, "{n}"),
            Peer::Cidr(c) => write!(f, "{c}"),
            Peer::Service(s) => write!(f, "service:{s}"),
            Peer::Container(c) => write!(f, "container:{c}"),
            Peer::Any => write!(f, "any"),
        }
    }
}

impl fmt::Display for Rule {
    /// The rule as the command line writes it: `--deny-ingress-from frontend`,
    /// `--allow-ingress-from backend:5432/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        let dir = match self.direction {
            Direction::Ingress => "ingress-from",
            Direction::Egress => "egress-to",
        };
        write!(f, "--{action}-{dir} {}", self.peer)?;
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(PortRange::to_string).collect();
            write!(f, ":{}", ports.join(","))?;
        }
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Any => "any",
        };
        write!(f, "/{proto}")
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
