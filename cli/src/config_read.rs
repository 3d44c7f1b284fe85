//! The file of `shibafu apply -f`: YAML read into the [`Document`] the coordinator applies, with
//! every error found in it and where each part of the document came from. The coordinator's
//! problems name paths into the document; [`Origins`] turns them back into places in the file.
//! Keys and values are spelled as the command line's flags (`port-name`, `all-unhealthy`,
//! `health: {http: 80/healthz, interval: 1s}`) and read by the flags' own parsers.

use shibafu_overlay::api::{CreateNetwork, Document, LinkNetworks, ServiceSpec};
use shibafu_overlay::model::{AllUnhealthy, HealthSpec, Isolation, LbPolicy, Probe, Protocol};

use crate::config_policy::policies;
use crate::config_reader::{At, FileError, Origins, Reader};
use crate::health_args::{parse_duration, parse_http};
use crate::service::{Lb, Proto, WhenNoneHealthy};
use crate::yaml::{Loc, Node};

const TOP_KEYS: &[&str] = &["networks", "links", "services", "policies"];
const NETWORK_KEYS: &[&str] = &[
    "subnet",
    "subnet6",
    "mtu",
    "internal",
    "isolation",
    "encrypted",
    "dns",
];
const DNS_KEYS: &[&str] = &["zone", "forwarders"];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "network",
    "lb",
    "port",
    "port-name",
    "protocol",
    "all-unhealthy",
    "health",
];
const HEALTH_KEYS: &[&str] = &[
    "tcp",
    "http",
    "cmd",
    "interval",
    "timeout",
    "rise",
    "fall",
    "start-period",
];

/// A file read: the document (its broken parts left out or empty), where its parts came from,
/// and everything wrong with it.
#[derive(Debug)]
pub struct Read {
    /// The desired state.
    pub document: Document,
    /// Where its parts are in the file.
    pub origins: Origins,
    /// What is wrong, in the order found.
    pub errors: Vec<FileError>,
}

/// Reads a parsed file.
pub fn read(root: &Node) -> Read {
    let mut r = Reader::default();
    let top = At {
        node: root,
        loc: Loc::default(),
    };
    let f = r.fields(&top, TOP_KEYS);
    let document = Document {
        networks: f
            .get("networks")
            .map(|a| networks(&mut r, a))
            .unwrap_or_default(),
        links: f.get("links").map(|a| links(&mut r, a)).unwrap_or_default(),
        services: f
            .get("services")
            .map(|a| services(&mut r, a))
            .unwrap_or_default(),
        policies: f
            .get("policies")
            .map(|a| policies(&mut r, a))
            .unwrap_or_default(),
    };
    let (errors, origins) = r.finish();
    Read {
        document,
        origins,
        errors,
    }
}

fn networks(r: &mut Reader, at: &At<'_>) -> Vec<CreateNetwork> {
    let entries = match at.node {
        Node::Map(entries) => entries.as_slice(),
        Node::Null => &[],
        _ => {
            let msg = "expected a mapping of network names to their settings";
            r.error(&at.loc, msg);
            &[]
        }
    };
    let mut out = Vec::new();
    for (i, (k, v)) in entries.iter().enumerate() {
        let key = At {
            node: k,
            loc: at.loc.key(i),
        };
        let Some(name) = r.text(&key) else {
            continue;
        };
        let n = out.len();
        let path = move |field: &str| format!("networks/{n}/{field}");
        r.origin(format!("networks/{n}"), &key.loc);
        let value = At {
            node: v,
            loc: at.loc.entry(i),
        };
        let f = r.fields(&value, NETWORK_KEYS);
        let mut net = CreateNetwork {
            name: name.clone(),
            ..CreateNetwork::default()
        };
        match f.get("subnet") {
            Some(a) => {
                r.origin(path("subnet"), &a.loc);
                net.subnet = r.text(a).unwrap_or_default();
            }
            None => r.error(&key.loc, format!("network {name:?}: missing subnet")),
        }
        if let Some(a) = f.get("subnet6") {
            r.origin(path("subnet6"), &a.loc);
            net.subnet6 = r.text(a);
        }
        if let Some(a) = f.get("mtu") {
            r.origin(path("mtu"), &a.loc);
            net.mtu = r.number(a);
        }
        if let Some(a) = f.get("internal") {
            r.origin(path("internal"), &a.loc);
            net.internal = r.flag(a).unwrap_or(false);
        }
        if let Some(a) = f.get("encrypted") {
            r.origin(path("encrypted"), &a.loc);
            net.encrypted = r.flag(a).unwrap_or(false);
        }
        if let Some(a) = f.get("isolation") {
            r.origin(path("isolation"), &a.loc);
            let word = r.text(a).map(|t| t.parse::<Isolation>());
            net.isolation = match word {
                Some(Ok(i)) => i,
                Some(Err(e)) => {
                    r.error(&a.loc, e);
                    Isolation::None
                }
                None => Isolation::None,
            };
        }
        if let Some(a) = f.get("dns") {
            let dns = r.fields(a, DNS_KEYS);
            if let Some(z) = dns.get("zone") {
                r.origin(path("zone"), &z.loc);
                net.zone = r.text(z);
            }
            if let Some(list) = dns.get("forwarders") {
                r.origin(path("forwarders"), &list.loc);
                for (j, item) in r.list(list).iter().enumerate() {
                    r.origin(path(&format!("forwarders/{j}")), &item.loc);
                    net.forwarders.extend(r.text(item));
                }
            }
        }
        out.push(net);
    }
    out
}

fn links(r: &mut Reader, at: &At<'_>) -> Vec<LinkNetworks> {
    let mut out = Vec::new();
    for item in r.list(at) {
        let pair = r.list(&item);
        let names: Vec<Option<String>> = pair.iter().map(|a| r.text(a)).collect();
        match names.as_slice() {
            [Some(a), Some(b)] => {
                let n = out.len();
                r.origin(format!("links/{n}"), &item.loc);
                r.origin(format!("links/{n}/a"), &pair[0].loc);
                r.origin(format!("links/{n}/b"), &pair[1].loc);
                out.push(LinkNetworks {
                    a: a.clone(),
                    b: b.clone(),
                });
            }
            [_, _] => {}
            _ => r.error(&item.loc, "a link names two networks: [a, b]"),
        }
    }
    out
}

fn services(r: &mut Reader, at: &At<'_>) -> Vec<ServiceSpec> {
    let mut out = Vec::new();
    for (i, item) in r.list(at).into_iter().enumerate() {
        let path = move |field: &str| format!("services/{i}/{field}");
        r.origin(format!("services/{i}"), &item.loc);
        let f = r.fields(&item, SERVICE_KEYS);
        let mut spec = ServiceSpec::default();
        for (key, slot) in [("name", &mut spec.name), ("network", &mut spec.network)] {
            match f.get(key) {
                Some(a) => {
                    r.origin(path(key), &a.loc);
                    *slot = r.text(a).unwrap_or_default();
                }
                None => r.error(&item.loc, format!("service: missing {key}")),
            }
        }
        if let Some(a) = f.get("lb") {
            r.origin(path("lb"), &a.loc);
            spec.lb = r.word::<Lb>(a, "lb").map(LbPolicy::from);
        }
        if let Some(a) = f.get("port") {
            r.origin(path("port"), &a.loc);
            spec.port = r.port(a);
        }
        if let Some(a) = f.get("port-name") {
            r.origin(path("port_name"), &a.loc);
            spec.port_name = r.text(a);
        }
        if let Some(a) = f.get("protocol") {
            r.origin(path("protocol"), &a.loc);
            spec.protocol = r.word::<Proto>(a, "protocol").map(Protocol::from);
        }
        if let Some(a) = f.get("all-unhealthy") {
            r.origin(path("all_unhealthy"), &a.loc);
            let w = r.word::<WhenNoneHealthy>(a, "all-unhealthy");
            spec.all_unhealthy = w.map(AllUnhealthy::from);
        }
        if let Some(a) = f.get("health") {
            spec.health = health(r, a, &path("health"));
        }
        out.push(spec);
    }
    out
}

/// `health: {tcp: PORT | http: PORT/PATH | cmd: CMD, interval, timeout, rise, fall,
/// start-period}`, the values of the `--health-*` flags.
fn health(r: &mut Reader, at: &At<'_>, path: &str) -> HealthSpec {
    r.origin(path, &at.loc);
    let f = r.fields(at, HEALTH_KEYS);
    let mut spec = HealthSpec::default();
    for key in ["tcp", "http", "cmd"] {
        let Some(a) = f.get(key) else {
            continue;
        };
        let probe = match key {
            "tcp" => r.port(a).map(|port| Probe::Tcp { port }),
            "http" => r.text(a).and_then(|t| match parse_http(&t) {
                Ok((port, path)) => Some(Probe::Http { port, path }),
                Err(e) => {
                    r.error(&a.loc, e);
                    None
                }
            }),
            _ => command(r, a).map(|argv| Probe::Cmd { argv }),
        };
        if spec.probe.is_some() {
            let at = f.key(key).unwrap_or(&a.loc);
            r.error(at, "give one check: tcp, http or cmd");
        } else {
            r.origin(format!("{path}/probe"), &a.loc);
            spec.probe = probe;
        }
    }
    let timings: [(&str, &str, &mut Option<u64>); 3] = [
        ("interval", "interval_ms", &mut spec.interval_ms),
        ("timeout", "timeout_ms", &mut spec.timeout_ms),
        ("start-period", "start_period_ms", &mut spec.start_period_ms),
    ];
    for (key, field, slot) in timings {
        if let Some(a) = f.get(key) {
            r.origin(format!("{path}/{field}"), &a.loc);
            *slot = r
                .text(a)
                .and_then(|t| parse_duration(&t).map_err(|e| r.error(&a.loc, e)).ok());
        }
    }
    for (key, slot) in [("rise", &mut spec.rise), ("fall", &mut spec.fall)] {
        if let Some(a) = f.get(key) {
            r.origin(format!("{path}/{key}"), &a.loc);
            *slot = r.number(a);
        }
    }
    spec
}

/// `cmd: "test -f /ready"` (split on blanks, as `--health-cmd`) or `cmd: [test, -f, /ready]`.
fn command(r: &mut Reader, at: &At<'_>) -> Option<Vec<String>> {
    match at.node {
        Node::Seq(_) => r.list(at).iter().map(|a| r.text(a)).collect(),
        _ => r
            .text(at)
            .map(|t| t.split_whitespace().map(str::to_string).collect()),
    }
}

#[cfg(test)]
#[path = "config_read_tests.rs"]
mod tests;
