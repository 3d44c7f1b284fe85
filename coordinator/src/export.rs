//! The cluster as a [`Document`] (`GET /v1/export`, `shibafu export`): every field at its
//! default is left out, as a file would leave it out, so applying an export changes nothing.

use std::net::SocketAddr;

use shibafu_overlay::api::{CreateNetwork, Document, LinkNetworks, ServiceSpec};
use shibafu_overlay::model::{HealthCheck, HealthSpec, Network, Service};

use crate::apply_plan::Current;
use crate::validate::DNS_PORT;

/// The document whose apply leaves `current` as it is (networks, links, services, policies,
/// each sorted by name).
pub fn document_of(current: &Current) -> Document {
    let mut doc = Document {
        networks: current.networks.iter().map(network).collect(),
        links: current
            .links
            .iter()
            .map(|l| LinkNetworks {
                a: l.a.clone(),
                b: l.b.clone(),
            })
            .collect(),
        services: current.services.iter().map(service).collect(),
        policies: current.policies.clone(),
    };
    doc.networks.sort_by(|a, b| a.name.cmp(&b.name));
    doc.links.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    doc.services
        .sort_by(|a, b| (&a.network, &a.name).cmp(&(&b.network, &b.name)));
    doc.policies.sort_by(|a, b| a.name.cmp(&b.name));
    doc
}

fn network(n: &Network) -> CreateNetwork {
    CreateNetwork {
        name: n.name.clone(),
        subnet: n.subnet.to_string(),
        subnet6: n.subnet6.map(|s| s.to_string()),
        zone: (n.zone != format!("{}.local", n.name)).then(|| n.zone.clone()),
        mtu: n.mtu,
        internal: n.internal,
        forwarders: n.forwarders.iter().map(forwarder).collect(),
        isolation: n.isolation,
        encrypted: n.encrypted,
    }
}

/// `IP` for port 53, else `IP:PORT` (`[IP]:PORT` for IPv6).
fn forwarder(a: &SocketAddr) -> String {
    if a.port() == DNS_PORT {
        a.ip().to_string()
    } else {
        a.to_string()
    }
}

fn service(s: &Service) -> ServiceSpec {
    let default = Service::new(&s.network, &s.name);
    let unless_default = |v, d| (v != d).then_some(v);
    ServiceSpec {
        network: s.network.clone(),
        name: s.name.clone(),
        lb: unless_default(s.lb, default.lb),
        port: s.port,
        port_name: s.port_name.clone(),
        protocol: (s.protocol != default.protocol).then_some(s.protocol),
        all_unhealthy: (s.all_unhealthy != default.all_unhealthy).then_some(s.all_unhealthy),
        health: s.health.as_ref().map(health).unwrap_or_default(),
    }
}

/// The spec that makes `c` anew: its probe and each timing that is not the default.
fn health(c: &HealthCheck) -> HealthSpec {
    let d = HealthCheck::new(c.probe.clone());
    HealthSpec {
        probe: Some(c.probe.clone()),
        interval_ms: (c.interval_ms != d.interval_ms).then_some(c.interval_ms),
        timeout_ms: (c.timeout_ms != d.timeout_ms).then_some(c.timeout_ms),
        rise: (c.rise != d.rise).then_some(c.rise),
        fall: (c.fall != d.fall).then_some(c.fall),
        start_period_ms: (c.start_period_ms != d.start_period_ms).then_some(c.start_period_ms),
    }
}
