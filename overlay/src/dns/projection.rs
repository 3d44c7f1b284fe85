//! The projection from cluster state to DNS (pure): a zone per network with its containers,
//! aliases and services, reverse zones with PTR records, and views so a requester sees only the
//! zones it should. Agents and coordinators serve the same projection; tests call it directly.
//!
//! Only networks the model admits are projected ([`admit`]: valid, clashing with no other), as
//! only those are built. It is computed per network ([`project_network`]): a change to one
//! network's endpoints re-projects that network only. [`Projection`] keeps the parts of every
//! network, replaces the ones a change touches, notes which names that changed, and makes the
//! next [`Snapshot`] by patching the previous one at those names only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};

use super::assemble::builder_of;
pub use super::assemble::{assemble, assemble_with};
use super::authority::Authority;
use super::balance::{self, Instance};
use super::reproject::{reproject, Basis};
pub use super::snapshot::{reverse_zone_v4, reverse_zone_v6};
use super::{reverse_name, AnswerOrder, DnsError, Snapshot};
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

/// The DNS content of one network: its zones, what it holds at each owner name (lowercased,
/// absolute) and its members.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkZones {
    pub(super) zones: Vec<String>,
    pub(super) owners: BTreeMap<String, Owner>,
    pub(super) members: Vec<Member>,
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

/// The address records of `e`.
pub(super) fn addresses(e: &Endpoint) -> impl Iterator<Item = RData> {
    std::iter::once(RData::A(A(e.ipv4))).chain(e.ipv6.map(|v6| RData::AAAA(AAAA(v6))))
}

/// `e` as views see it.
pub(super) fn member_of(e: &Endpoint) -> Member {
    let mut addrs = vec![IpAddr::V4(e.ipv4)];
    addrs.extend(e.ipv6.map(IpAddr::V6));
    Member {
        node: e.node.clone(),
        name: e.name.clone(),
        addrs,
    }
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
            let at = out.at(fqdn(label, &net.zone));
            at.records.extend(addresses(e).map(|rd| (RECORD_TTL, rd)));
        }
        let member = member_of(e);
        for ip in &member.addrs {
            let ptr = RData::PTR(PTR(target.clone()));
            out.at(reverse_name(*ip)).records.push((RECORD_TTL, ptr));
        }
        out.members.push(member);
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
    /// Owner names whose content changed since the last snapshot [`Projection::next_snapshot`]
    /// made; `None`: zones came or went, the next one is built whole.
    changed_names: Option<BTreeSet<String>>,
    /// That snapshot's generation, view and authority.
    last: Option<(u64, View, Authority)>,
    /// What the parts of networks without services were projected from, to re-project them in
    /// place.
    bases: BTreeMap<String, Basis>,
}

/// The zones of `net` without a record.
fn bare_zones(net: &Network) -> NetworkZones {
    NetworkZones {
        zones: zones_of(net),
        owners: BTreeMap::new(),
        members: Vec::new(),
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
        self.bases.retain(|name, _| self.parts.contains_key(name));
        let mut changed = (self.parts.len(), self.bare.len()) != before;
        if changed {
            self.changed_names = None;
        }
        for net in wanted {
            let stale = touched.is_none_or(|t| t.contains(&net.name))
                || !self.parts.contains_key(&net.name);
            if !stale {
                continue;
            }
            let eps = endpoints_of(net);
            let in_place = match (self.parts.get_mut(&net.name), self.bases.get_mut(&net.name)) {
                (Some(part), Some(basis)) => reproject(part, basis, net, &eps, state),
                _ => None,
            };
            if let Some((names, any)) = in_place {
                if let Some(since) = &mut self.changed_names {
                    since.extend(names);
                }
                changed |= any;
                continue;
            }
            let part = project_network(net, &eps, state);
            match Basis::of(net, &eps, state) {
                Some(basis) => self.bases.insert(net.name.clone(), basis),
                None => self.bases.remove(&net.name),
            };
            match self.parts.get(&net.name) {
                Some(old) if old.zones == part.zones => {
                    let mut names = BTreeSet::new();
                    owners_changed(old, &part, &mut names);
                    if names.is_empty() && old.members == part.members {
                        continue;
                    }
                    if let Some(since) = &mut self.changed_names {
                        since.extend(names);
                    }
                }
                _ => self.changed_names = None,
            }
            self.parts.insert(net.name.clone(), part);
            changed = true;
        }
        for net in outside {
            if self
                .bare
                .get(&net.name)
                .is_none_or(|(known, _)| known != net)
            {
                self.bare
                    .insert(net.name.clone(), (net.clone(), bare_zones(net)));
                self.changed_names = None;
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

    /// The snapshot of every network under `view`, built whole.
    pub fn snapshot(&self, view: View) -> Result<Snapshot, DnsError> {
        assemble(self.all_parts(), view)
    }

    /// The snapshot of every network under `view`, its zones served by `authority`, built whole.
    pub fn snapshot_with(&self, view: View, authority: &Authority) -> Result<Snapshot, DnsError> {
        assemble_with(self.all_parts(), view, authority)
    }

    /// The snapshot of every network under `view`, its zones served by `authority`: a patch of
    /// `previous` at the names changed since (their answers alone encoded again) when this
    /// projection made `previous` under the same view and authority, else built whole.
    pub fn next_snapshot(
        &mut self,
        previous: &Snapshot,
        view: View,
        authority: &Authority,
    ) -> Result<Snapshot, DnsError> {
        let follows = self.last.as_ref().is_some_and(|(generation, v, a)| {
            *generation == previous.generation() && *v == view && a == authority
        });
        let patched = match &self.changed_names {
            Some(names) if follows => {
                let b = builder_of(self.all_parts(), view, authority, Some(names));
                b.build_over(previous, names.iter().map(String::as_str))?
            }
            _ => None,
        };
        let snap = match patched {
            Some(snap) => snap,
            None => self.snapshot_with(view, authority)?,
        };
        self.changed_names = Some(BTreeSet::new());
        self.last = Some((snap.generation(), view, authority.clone()));
        Ok(snap)
    }
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;
