//! The projection from cluster state to DNS (pure): a zone per network with its containers,
//! aliases and services, reverse zones with PTR records, and views so a requester sees only the
//! zones it should. Agents and coordinators serve the same projection; tests call it directly.
//!
//! Only networks the model admits are projected ([`admit`](crate::model::admit): valid, clashing with no other), as
//! only those are built. It is computed per network ([`project_network`]): a change to one
//! network's endpoints re-projects that network only. [`Projection`] keeps the parts of every
//! network, replaces the ones a change touches, notes which names that changed, and makes the
//! next [`Snapshot`](super::Snapshot) by patching the previous one at those names only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};

pub use super::assemble::{assemble, assemble_with};
use super::balance::{self, Instance};
pub use super::parts::{Projection, Touched};
pub use super::snapshot::{reverse_zone_v4, reverse_zone_v6};
use super::{reverse_name, AnswerOrder};
use crate::model::{answered, Answered, Endpoint, Health, Network, Protocol, Service};
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

/// A workload on a network, as views see it: who it is and the addresses it asks from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) node: String,
    pub(super) name: String,
    pub(super) addrs: Vec<IpAddr>,
}

/// What one network puts at one owner name: records (TTL and data, in order), an answer order
/// and a note.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Owner {
    pub(super) records: Vec<(u32, RData)>,
    pub(super) order: Option<AnswerOrder>,
    pub(super) note: Option<String>,
}

/// Key of a member in its network: its endpoint's id and, among endpoints sharing that id, its
/// place (0 but for the rare duplicate).
pub(super) type MemberKey = (String, u32);

/// The DNS content of one network: its name and zones, what it holds at each owner name
/// (lowercased, absolute) and its members.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkZones {
    pub(super) network: String,
    pub(super) zones: Vec<String>,
    pub(super) owners: BTreeMap<String, Owner>,
    pub(super) members: BTreeMap<MemberKey, Member>,
}

impl NetworkZones {
    /// The zones (forward and reverse) this network is authoritative for.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// What this network holds at `name` (added empty if nothing yet).
    fn at(&mut self, name: String) -> &mut Owner {
        self.owners.entry(name).or_default()
    }
}

/// `label.zone.`, lowercased: owner names are compared as DNS compares them.
pub(super) fn fqdn(label: &str, zone: &str) -> String {
    let mut name = format!("{label}.{zone}.");
    name.make_ascii_lowercase();
    name
}

/// The zones (forward and reverse) of one network.
fn zones_of(n: &Network) -> Vec<String> {
    let mut z = vec![n.zone.clone(), reverse_zone_v4(&n.subnet)];
    z.extend(n.subnet6.as_ref().map(reverse_zone_v6));
    z
}

/// The address records of an endpoint with these addresses.
pub(super) fn address_records(v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> impl Iterator<Item = RData> {
    std::iter::once(RData::A(A(v4))).chain(v6.map(|v6| RData::AAAA(AAAA(v6))))
}

/// The address records of `e`.
fn addresses(e: &Endpoint) -> impl Iterator<Item = RData> {
    address_records(e.ipv4, e.ipv6)
}

impl Member {
    /// Workload `name` of `node`, asking from these addresses.
    pub(super) fn new(node: &str, name: &str, v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> Member {
        let mut addrs = vec![IpAddr::V4(v4)];
        addrs.extend(v6.map(IpAddr::V6));
        Member {
            node: node.to_string(),
            name: name.to_string(),
            addrs,
        }
    }
}

/// `e` as views see it.
fn member_of(e: &Endpoint) -> Member {
    Member::new(&e.node, &e.name, e.ipv4, e.ipv6)
}

/// Projects one network: names, aliases and PTRs of `endpoints`, and its services (those of
/// `state` and those its endpoints name) over their healthy instances, as [`add_service`] says.
/// Records several endpoints hold at one name come in the order of the endpoints' ids, however
/// they were listed: every node answers alike, and a change re-projects by id.
pub fn project_network(
    net: &Network,
    endpoints: &[&Endpoint],
    state: &ClusterState,
) -> NetworkZones {
    let mut endpoints = endpoints.to_vec();
    endpoints.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = bare_zones(net);
    let mut services: BTreeMap<&str, Vec<&Endpoint>> = state
        .services_of(&net.name)
        .map(|s| (s.name.as_str(), Vec::new()))
        .collect();
    for &e in &endpoints {
        let owner = fqdn(&e.name, &net.zone);
        let Ok(target) = Name::from_ascii(&owner) else {
            continue;
        };
        for label in std::iter::once(&e.name).chain(&e.aliases) {
            let at = out.at(fqdn(label, &net.zone));
            at.records.extend(addresses(e).map(|rd| (RECORD_TTL, rd)));
        }
        let member = member_of(e);
        for ip in &member.addrs {
            let ptr = RData::PTR(PTR(target.clone()));
            out.at(reverse_name(*ip)).records.push((RECORD_TTL, ptr));
        }
        let place = out
            .members
            .range((e.id.clone(), 0)..=(e.id.clone(), u32::MAX))
            .count();
        out.members.insert((e.id.clone(), place as u32), member);
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
    let name = fqdn(&service.name, &net.zone);
    let health = |e: &Endpoint| state.health().get(&(e.network.clone(), e.id.clone()));
    let with_health: Vec<(&Endpoint, Option<&Health>)> =
        instances.iter().map(|e| (*e, health(e))).collect();
    let verdict = answered(service, &with_health);
    let at = out.at(name);
    if verdict == Answered::FailClosed {
        let why = format!("no healthy instance of {} (fail-closed)", service.name);
        at.records
            .push((RECORD_TTL, RData::TXT(TXT::new(vec![why]))));
        return;
    }
    if verdict == Answered::FailOpen {
        at.note = Some(format!(
            "no healthy instance of {}: every running instance answered (fail-open)",
            service.name
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
        at.records.extend(addresses(e).map(|rd| (RECORD_TTL, rd)));
    }
    at.order = Some(balance::order(service.lb, &policy));
    let (Some(label), Some(port)) = (service.srv_label(), service.port) else {
        return;
    };
    let proto = match service.protocol {
        Protocol::Tcp => "_tcp",
        Protocol::Udp => "_udp",
    };
    let owner = fqdn(&format!("_{label}.{proto}.{}", service.name), &net.zone);
    let at = out.at(owner);
    for e in &answered {
        let Ok(target) = Name::from_ascii(fqdn(&e.name, &net.zone)) else {
            continue;
        };
        let weight = u16::try_from(e.weight).unwrap_or(u16::MAX);
        let srv = SRV::new(10, weight, port, target);
        at.records.push((RECORD_TTL, RData::SRV(srv)));
    }
}

/// The zones of `net` without a record.
pub(super) fn bare_zones(net: &Network) -> NetworkZones {
    NetworkZones {
        network: net.name.clone(),
        zones: zones_of(net),
        owners: BTreeMap::new(),
        members: BTreeMap::new(),
    }
}

/// Adds to `changed` the owner names whose content differs between `old` and `new` (a walk of
/// both in order).
pub(super) fn owners_changed(
    old: &NetworkZones,
    new: &NetworkZones,
    changed: &mut BTreeSet<String>,
) {
    let mut a = old.owners.iter().peekable();
    let mut b = new.owners.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((x, before)), Some((y, after))) if x == y => {
                if before != after {
                    changed.insert(x.to_string());
                }
                a.next();
                b.next();
            }
            (Some((x, _)), Some((y, _))) if x < y => {
                changed.insert(x.to_string());
                a.next();
            }
            (Some((x, _)), None) => {
                changed.insert(x.to_string());
                a.next();
            }
            (_, Some((y, _))) => {
                changed.insert(y.to_string());
                b.next();
            }
        }
    }
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "projection_patch_tests.rs"]
mod patch_tests;
