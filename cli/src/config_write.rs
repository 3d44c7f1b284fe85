//! `shibafu export`: a [`Document`] written as the file `shibafu apply` reads, every field that
//! the document leaves out left out, rules in the command line's flag form (the one that says
//! everything a rule can).

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use shibafu_overlay::api::{CreateNetwork, Document, ServiceSpec};
use shibafu_overlay::model::{
    AllUnhealthy, HealthSpec, Isolation, LbPolicy, Policy, Probe, Protocol,
};

/// First line of an export.
const HEADER: &str =
    "# The cluster's networks, links, services and policies: shibafu apply -f FILE\n";

/// The file for `doc`: its sections in the order networks, links, services, policies.
pub fn render(doc: &Document) -> Result<String, serde_norway::Error> {
    let mut text = HEADER.to_string();
    if !doc.networks.is_empty() {
        text.push_str(&section("networks", Networks(&doc.networks))?);
    }
    if !doc.links.is_empty() {
        // Each link on one line, `- [a, b]`, as people write them.
        text.push_str("links:\n");
        for l in &doc.links {
            text.push_str(&format!("- [{}, {}]\n", scalar(&l.a)?, scalar(&l.b)?));
        }
    }
    if !doc.services.is_empty() {
        let services: Vec<ServiceOut<'_>> = doc.services.iter().map(service).collect();
        text.push_str(&section("services", services)?);
    }
    if !doc.policies.is_empty() {
        let policies: Vec<PolicyOut<'_>> = doc.policies.iter().map(policy).collect();
        text.push_str(&section("policies", policies)?);
    }
    Ok(text)
}

/// `key:` and its value, as YAML.
fn section<T: Serialize>(key: &str, value: T) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(&BTreeMap::from([(key, value)]))
}

/// A name as a YAML scalar (quoted when it would read as something else, such as `123`).
fn scalar(name: &str) -> Result<String, serde_norway::Error> {
    Ok(serde_norway::to_string(name)?.trim_end().to_string())
}

/// Networks by name, in the document's order.
struct Networks<'a>(&'a [CreateNetwork]);

impl Serialize for Networks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for n in self.0 {
            map.serialize_entry(&n.name, &network(n))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct NetworkOut<'a> {
    subnet: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subnet6: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    internal: bool,
    #[serde(skip_serializing_if = "Isolation::is_none")]
    isolation: Isolation,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<DnsOut<'a>>,
}

#[derive(Serialize)]
struct DnsOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    forwarders: &'a [String],
}

fn network(n: &CreateNetwork) -> NetworkOut<'_> {
    let dns = (n.zone.is_some() || !n.forwarders.is_empty()).then(|| DnsOut {
        zone: n.zone.as_deref(),
        forwarders: &n.forwarders,
    });
    NetworkOut {
        subnet: &n.subnet,
        subnet6: n.subnet6.as_deref(),
        mtu: n.mtu,
        internal: n.internal,
        isolation: n.isolation,
        encrypted: n.encrypted,
        dns,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ServiceOut<'a> {
    name: &'a str,
    network: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lb: Option<LbPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    all_unhealthy: Option<AllUnhealthy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthOut>,
}

/// The `--health-*` flags' values.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct HealthOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rise: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fall: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<String>,
}

/// A command as one line when splitting it on blanks gives it back, else as a list.
#[derive(Serialize)]
#[serde(untagged)]
enum Command {
    Line(String),
    Argv(Vec<String>),
}

fn service(s: &ServiceSpec) -> ServiceOut<'_> {
    ServiceOut {
        name: &s.name,
        network: &s.network,
        lb: s.lb,
        port: s.port,
        port_name: s.port_name.as_deref(),
        protocol: s.protocol,
        all_unhealthy: s.all_unhealthy,
        health: (!s.health.is_empty()).then(|| health(&s.health)),
    }
}

fn health(h: &HealthSpec) -> HealthOut {
    let (mut tcp, mut http, mut cmd) = (None, None, None);
    match &h.probe {
        Some(Probe::Tcp { port }) => tcp = Some(*port),
        Some(Probe::Http { port, path }) => http = Some(format!("{port}{path}")),
        Some(Probe::Cmd { argv }) => {
            let line = argv.join(" ");
            let splits_back = line.split_whitespace().eq(argv.iter().map(String::as_str));
            cmd = Some(if splits_back {
                Command::Line(line)
            } else {
                Command::Argv(argv.clone())
            });
        }
        None => {}
    }
    HealthOut {
        tcp,
        http,
        cmd,
        interval: h.interval_ms.map(duration),
        timeout: h.timeout_ms.map(duration),
        rise: h.rise,
        fall: h.fall,
        start_period: h.start_period_ms.map(duration),
    }
}

/// Milliseconds as the flags write them: `2m`, `1s`, `250ms`.
fn duration(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

#[derive(Serialize)]
struct PolicyOut<'a> {
    name: &'a str,
    network: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    rules: Vec<RuleOut>,
}

/// `{allow-ingress-from: PEER[:PORTS]/PROTO}`: the rule's flag and its value.
struct RuleOut(String, String);

impl Serialize for RuleOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(&self.0, &self.1)?;
        map.end()
    }
}

fn policy(p: &Policy) -> PolicyOut<'_> {
    let rules = p
        .rules
        .iter()
        .map(|r| {
            // The rule's Display is the command line: `--allow-ingress-from backend:5432/tcp`.
            let text = r.to_string();
            let (flag, value) = text.split_once(' ').unwrap_or((&text, ""));
            RuleOut(flag.trim_start_matches('-').to_string(), value.to_string())
        })
        .collect();
    PolicyOut {
        name: &p.name,
        network: &p.network,
        service: p.service.as_deref(),
        rules,
    }
}

#[cfg(test)]
#[path = "config_write_tests.rs"]
mod tests;
