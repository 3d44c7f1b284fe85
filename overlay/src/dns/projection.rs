//! The projection from cluster state to DNS (pure): a zone per network with its containers,
//! aliases and services, reverse zones with PTR records, and views so a requester sees only the
//! zones it should. Agents and coordinators serve the same projection; tests call it directly.
//!
//! Only networks the model admits are projected ([`admit`]: valid, clashing with no other), as
//! only those are built. It is computed per network ([`project_network`]): a change to one
//! network's endpoints
//! re-projects that network only. [`Projection`] keeps the parts of every network, patches the
//! ones a change touches, and assembles the [`Snapshot`] from them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};
use ipnet::{Ipv4Net, Ipv6Net};

use super::authority::Authority;
use super::balance::{self, Instance};
use super::{reverse_name, AnswerOrder, DnsError, Snapshot, SnapshotBuilder};
use crate::model::{admit, answered, Answered, Endpoint, Health, Network, Protocol, Service};
use crate::state::ClusterState;

/// TTL of container and service records: short, since containers come and go.
pub const RECORD_TTL: u32 = 5;

/// Who may see which zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Each requester that is an endpoint address sees the zones of every network its workload
    /// is on; other requesters (the host itself) see every zone. What an agent serves.
    Members,
    /// Every requester sees every zone: the cluster-wide view a coordinator serves.
    Cluster,
}

/// The reverse zone holding the PTR records of an IPv4 subnet (enclosing octet boundary).
pub fn reverse_zone_v4(net: &Ipv4Net) -> String {
    let octets = usize::from(net.prefix_len() / 8);
    let o = net.network().octets();
    let mut labels: Vec<String> = o[..octets].iter().rev().map(u8::to_string).collect();
    labels.push("in-addr.arpa".into());
    labels.join(".")
}

/// The reverse zone of an IPv6 subnet (enclosing nibble boundary).
pub fn reverse_zone_v6(net: &Ipv6Net) -> String {
    let nibbles = usize::from(net.prefix_len() / 4);
    let o = net.network().octets();
    let all: Vec<u8> = o.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
    let mut labels: Vec<String> = all[..nibbles]
        .iter()
        .rev()
        .map(|n| format!("{n:x}"))
        .collect();
    labels.push("ip6.arpa".into());
    labels.join(".")
}

/// A workload on a network, as views see it: who it is and the addresses it asks from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    node: String,
    name: String,
    addrs: Vec<IpAddr>,
}

/// The DNS content of one network: its zones, records, answer orders, notes and members.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkZones {
    zones: Vec<String>,
    records: Vec<(String, u32, RData)>,
    orders: Vec<(String, AnswerOrder)>,
    notes: Vec<(String, String)>,
    members: Vec<Member>,
}

impl NetworkZones {
    /// The zones (forward and reverse) this network is authoritative for.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }
}

fn fqdn(label: &str, zone: &str) -> String {
    format!("{label}.{zone}.")
}

/// The zones (forward and reverse) of one network.
fn zones_of(n: &Network) -> Vec<String> {
    let mut z = vec![n.zone.clone(), reverse_zone_v4(&n.subnet)];
    z.extend(n.subnet6.as_ref().map(reverse_zone_v6));
    z
}

fn addresses(e: &Endpoint) -> impl Iterator<Item = RData> {
    std::iter::once(RData::A(A(e.ipv4))).chain(e.ipv6.map(|v6| RData::AAAA(AAAA(v6))))
}

/// Projects one network: names, aliases and PTRs of `endpoints`, and its services (those of
/// `state` and those its endpoints name) over their healthy instances, as [`add_service`] says.
pub fn project_network(
    net: &Network,
    endpoints: &[&Endpoint],
    state: &ClusterState,
) -> NetworkZones {
    let mut out = bare_zones(net);
    let mut services: BTreeMap<&str, Vec<&Endpoint>> = state
        .services()
        .values()
        .filter(|s| s.network == net.name)
        .map(|s| (s.name.as_str(), Vec::new()))
        .collect();
    for e in endpoints {
        let owner = fqdn(&e.name, &net.zone);
        let Ok(target) = Name::from_ascii(&owner) else {
            continue;
        };
        for label in std::iter::once(&e.name).chain(&e.aliases) {
            let at = fqdn(label, &net.zone);
            out.records
                .extend(addresses(e).map(|rd| (at.clone(), RECORD_TTL, rd)));
        }
        let mut addrs = vec![IpAddr::V4(e.ipv4)];
        addrs.extend(e.ipv6.map(IpAddr::V6));
        for ip in &addrs {
            let ptr = RData::PTR(PTR(target.clone()));
            out.records.push((reverse_name(*ip), RECORD_TTL, ptr));
        }
        out.members.push(Member {
            node: e.node.clone(),
            name: e.name.clone(),
            addrs,
        });
        if let Some(s) = e.service.as_deref() {
            services.entry(s).or_default().push(e);
        }
    }
    for (name, instances) in services {
        let key = (net.name.clone(), name.to_string());
        let service = state
            .services()
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Service {
                port: instances.iter().find_map(|e| e.port),
                ..Service::new(&net.name, name)
            });
        add_service(&mut out, net, &service, &instances, state);
    }
    out
}

/// A service's names: `<service>.<zone>` answers one healthy instance per query, chosen by the
/// service's policy ([`balance::order`]), and `_<port-name>._<protocol>.<service>.<zone>` lists
/// every healthy instance as SRV (priority 10, the instance's weight, the service port, its
/// name as target). With no healthy instance, `fail-closed` answers no address (a TXT record
/// says why) and `fail-open` answers every running instance, marked with an extended DNS error.
fn add_service(
    out: &mut NetworkZones,
    net: &Network,
    service: &Service,
    instances: &[&Endpoint],
    state: &ClusterState,
) {
    let at = fqdn(&service.name, &net.zone);
    let health = |e: &Endpoint| state.health().get(&(e.network.clone(), e.id.clone()));
    let with_health: Vec<(&Endpoint, Option<&Health>)> =
        instances.iter().map(|e| (*e, health(e))).collect();
    let verdict = answered(service, &with_health);
    if verdict == Answered::FailClosed {
        let why = format!("no healthy instance of {} (fail-closed)", service.name);
        out.records
            .push((at, RECORD_TTL, RData::TXT(TXT::new(vec![why]))));
        return;
    }
    if verdict == Answered::FailOpen {
        out.notes.push((
            at.clone(),
            format!(
                "no healthy instance of {}: every running instance answered (fail-open)",
                service.name
            ),
        ));
    }
    let answered: Vec<&Endpoint> = instances
        .iter()
        .enumerate()
        .filter(|(i, _)| verdict.is_answered(*i))
        .map(|(_, e)| *e)
        .collect();
    let policy: Vec<Instance> = answered
        .iter()
        .map(|e| Instance {
            weight: e.weight,
            connections: health(e).and_then(|h| h.connections).unwrap_or(0),
        })
        .collect();
    for e in &answered {
        out.records
            .extend(addresses(e).map(|rd| (at.clone(), RECORD_TTL, rd)));
    }
    out.orders.push((at, balance::order(service.lb, &policy)));
    let (Some(label), Some(port)) = (service.srv_label(), service.port) else {
        return;
    };
    let proto = match service.protocol {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
    };
    let owner = format!("_{label}.{proto}.{}.{}.", service.name, net.zone);
    for e in &answered {
        let Ok(target) = Name::from_ascii(fqdn(&e.name, &net.zone)) else {
            continue;
        };
        let weight = u16::try_from(e.weight).unwrap_or(u16::MAX);
        let srv = SRV::new(10, weight, port, target);
        out.records
            .push((owner.clone(), RECORD_TTL, RData::SRV(srv)));
    }
}

/// Assembles the snapshot of `parts` (one per network) under `view`, with made-up SOA and NS.
pub fn assemble<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
    view: View,
) -> Result<Snapshot, DnsError> {
    assemble_with(parts, view, &Authority::default())
}

/// Assembles the snapshot of `parts` under `view`, every zone's SOA and NS naming the name
/// servers of `authority` (made up when it has none).
pub fn assemble_with<'a>(
    parts: impl IntoIterator<Item = &'a NetworkZones> + Clone,
    view: View,
    authority: &Authority,
) -> Result<Snapshot, DnsError> {
    let mut b = SnapshotBuilder::new();
    let mut declared = BTreeSet::new();
    for p in parts.clone() {
        for z in &p.zones {
            b.zone(z);
            // A reverse zone two networks share gets its SOA and NS once.
            if declared.insert(z.as_str()) {
                authority.add(&mut b, z);
            }
        }
    }
    // A workload sees the zones of every network it is on, asking from any of its addresses.
    let mut zones_of_member: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for p in parts.clone() {
        for (name, ttl, rdata) in &p.records {
            b.record(name, *ttl, rdata.clone());
        }
        for (name, order) in &p.orders {
            b.order(name, order.clone());
        }
        for (name, text) in &p.notes {
            b.note(name, text);
        }
        if view == View::Members {
            for m in &p.members {
                zones_of_member
                    .entry((m.node.as_str(), m.name.as_str()))
                    .or_default()
                    .extend(p.zones.iter().map(String::as_str));
            }
        }
    }
    if view == View::Members {
        for p in parts {
            for m in &p.members {
                let zones: Vec<&str> = zones_of_member
                    .get(&(m.node.as_str(), m.name.as_str()))
                    .map(|z| z.iter().copied().collect())
                    .unwrap_or_default();
                for ip in &m.addrs {
                    b.view(*ip, &zones);
                }
            }
        }
    }
    b.build()
}

/// The networks' parts of a cluster, kept current by patching only what a change touches,
/// optionally only for the networks in a scope (an agent's: those its workloads are on, the
/// only ones whose names anyone asks it for). Networks out of scope keep their zones, without
/// records: a name in them is still the cluster's (NXDOMAIN), never forwarded upstream.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    parts: BTreeMap<String, NetworkZones>,
    scope: Option<BTreeSet<String>>,
    /// Networks out of scope: their definition and their bare zones.
    bare: BTreeMap<String, (Network, NetworkZones)>,
}

/// The zones of `net` without a record.
fn bare_zones(net: &Network) -> NetworkZones {
    NetworkZones {
        zones: zones_of(net),
        records: Vec::new(),
        orders: Vec::new(),
        notes: Vec::new(),
        members: Vec::new(),
    }
}

impl Projection {
    /// No network yet.
    pub fn new() -> Projection {
        Projection::default()
    }

    /// Projects only the networks in `scope` from now on (`None`: every network); true when
    /// that changed the scope (the next [`Projection::update`] adds the networks it lacks).
    pub fn set_scope(&mut self, scope: Option<BTreeSet<String>>) -> bool {
        let changed = self.scope != scope;
        self.scope = scope;
        changed
    }

    /// Re-projects the networks named in `touched` (or every network when `None`) from
    /// `state`, with `endpoints_of` giving each network's endpoints; networks gone from `state`
    /// or not admitted are dropped, those out of scope keep only their zones. True when any
    /// part changed.
    pub fn update<'s>(
        &mut self,
        state: &'s ClusterState,
        touched: Option<&BTreeSet<String>>,
        endpoints_of: &dyn Fn(&'s Network) -> Vec<&'s Endpoint>,
    ) -> bool {
        let (admitted, _) = admit(state.networks().values());
        let in_scope = |name: &str| self.scope.as_ref().is_none_or(|s| s.contains(name));
        let (wanted, outside): (Vec<&Network>, Vec<&Network>) =
            admitted.into_iter().partition(|n| in_scope(&n.name));
        let before = (self.parts.len(), self.bare.len());
        self.parts
            .retain(|name, _| wanted.iter().any(|n| n.name == *name));
        self.bare
            .retain(|name, _| outside.iter().any(|n| n.name == *name));
        let mut changed = (self.parts.len(), self.bare.len()) != before;
        for net in wanted {
            let stale = touched.is_none_or(|t| t.contains(&net.name))
                || !self.parts.contains_key(&net.name);
            if stale {
                let eps = endpoints_of(net);
                let part = project_network(net, &eps, state);
                self.parts.insert(net.name.clone(), part);
                changed = true;
            }
        }
        for net in outside {
            if self
                .bare
                .get(&net.name)
                .is_none_or(|(known, _)| known != net)
            {
                self.bare
                    .insert(net.name.clone(), (net.clone(), bare_zones(net)));
                changed = true;
            }
        }
        changed
    }

    /// Every part: the networks in scope, then the bare zones of the others.
    fn all_parts(&self) -> impl Iterator<Item = &NetworkZones> + Clone {
        self.parts
            .values()
            .chain(self.bare.values().map(|(_, z)| z))
    }

    /// The snapshot of every network under `view`.
    pub fn snapshot(&self, view: View) -> Result<Snapshot, DnsError> {
        assemble(self.all_parts(), view)
    }

    /// The snapshot of every network under `view`, its zones served by `authority`.
    pub fn snapshot_with(&self, view: View, authority: &Authority) -> Result<Snapshot, DnsError> {
        assemble_with(self.all_parts(), view, authority)
    }
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;
