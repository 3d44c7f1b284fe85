//! Re-projecting a network in place: for a network without services, a change of its endpoints
//! recomputes only the names the changed endpoints held or hold (their names, aliases and
//! PTRs), exactly as [`project_network`](super::projection::project_network) would have them,
//! instead of projecting every endpoint again. The changed endpoints are found by comparing
//! every endpoint with what was read last ([`reproject`]) or, when the change names them, by
//! looking up those alone ([`reproject_ids`]).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData};

use super::hash::FastMap;
use super::projection::{address_records, fqdn, Member, NetworkZones, Owner, RECORD_TTL};
use super::reverse_name;
use crate::model::{Endpoint, Network};
use crate::state::ClusterState;

/// What a network without services was last projected from: its definition and, by endpoint
/// id, what the projection read of each endpoint.
#[derive(Debug, Clone)]
pub(super) struct Basis {
    net: Network,
    endpoints: FastMap<String, Seen>,
    /// Re-projections so far: each marks the endpoints it saw with its number.
    passes: u64,
    /// The ids of the endpoints holding each label (lowercased), once per time held.
    by_label: FastMap<String, Vec<String>>,
    /// The ids of the endpoints holding each address.
    by_ip: FastMap<IpAddr, Vec<String>>,
}

/// What the projection read of one endpoint, whether its name is a valid DNS name (an endpoint
/// whose name is not is left out), and the last re-projection that saw it.
#[derive(Debug, Clone)]
struct Seen {
    footprint: Footprint,
    valid: bool,
    pass: u64,
}

/// The fields of an endpoint the projection of a network without services reads.
#[derive(Debug, Clone)]
struct Footprint {
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    name: String,
    aliases: Vec<String>,
    node: String,
}

impl Footprint {
    fn of(e: &Endpoint) -> Footprint {
        Footprint {
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            name: e.name.clone(),
            aliases: e.aliases.clone(),
            node: e.node.clone(),
        }
    }

    /// Does `e` read as this footprint (compared without copying)?
    fn matches(&self, e: &Endpoint) -> bool {
        self.ipv4 == e.ipv4
            && self.name == e.name
            && self.node == e.node
            && self.ipv6 == e.ipv6
            && self.aliases == e.aliases
    }

    /// The labels it holds (name and aliases, lowercased), once per time held.
    fn labels(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(&self.name)
            .chain(&self.aliases)
            .map(|l| l.to_ascii_lowercase())
    }

    /// The addresses it holds.
    fn ips(&self) -> impl Iterator<Item = IpAddr> {
        std::iter::once(IpAddr::V4(self.ipv4)).chain(self.ipv6.map(IpAddr::V6))
    }

    /// Its address records.
    fn addresses(&self) -> impl Iterator<Item = RData> {
        address_records(self.ipv4, self.ipv6)
    }

    /// The member it is.
    fn member(&self) -> Member {
        Member::new(&self.node, &self.name, self.ipv4, self.ipv6)
    }
}

/// The name PTR records of an endpoint named `name` point at, if that is a valid DNS name in
/// `net`.
fn target(net: &Network, name: &str) -> Option<Name> {
    Name::from_ascii(fqdn(name, &net.zone)).ok()
}

impl Basis {
    /// The basis of `net` projected from `endpoints`; `None` when a re-projection in place
    /// cannot follow it (services on the network, or two endpoints with one id).
    pub(super) fn of(
        net: &Network,
        endpoints: &[&Endpoint],
        state: &ClusterState,
    ) -> Option<Basis> {
        if has_services(net, endpoints, state) {
            return None;
        }
        let mut basis = Basis {
            net: net.clone(),
            endpoints: FastMap::default(),
            passes: 0,
            by_label: FastMap::default(),
            by_ip: FastMap::default(),
        };
        for e in endpoints {
            if basis.endpoints.contains_key(&e.id) {
                return None;
            }
            basis.enter(net, e, 0);
        }
        Some(basis)
    }

    /// Notes endpoint `e`, seen by pass `pass`.
    fn enter(&mut self, net: &Network, e: &Endpoint, pass: u64) -> &Seen {
        let footprint = Footprint::of(e);
        for label in footprint.labels() {
            self.by_label.entry(label).or_default().push(e.id.clone());
        }
        for ip in footprint.ips() {
            self.by_ip.entry(ip).or_default().push(e.id.clone());
        }
        let seen = Seen {
            footprint,
            valid: target(net, &e.name).is_some(),
            pass,
        };
        self.endpoints
            .entry(e.id.clone())
            .insert_entry(seen)
            .into_mut()
    }

    /// Forgets endpoint `id`, returning what was noted of it.
    fn leave(&mut self, id: &str) -> Option<Seen> {
        let seen = self.endpoints.remove(id)?;
        for label in seen.footprint.labels() {
            forget(&mut self.by_label, label, id);
        }
        for ip in seen.footprint.ips() {
            forget(&mut self.by_ip, ip, id);
        }
        Some(seen)
    }

    /// The endpoints listed in `index` at `key`, in the order of their ids (a whole
    /// projection's), once per listing; only those whose name is a valid DNS name.
    fn holders<K: std::hash::Hash + Eq>(
        &self,
        index: &FastMap<K, Vec<String>>,
        key: &K,
    ) -> Vec<&Seen> {
        let mut ids: Vec<&String> = index.get(key).into_iter().flatten().collect();
        ids.sort_unstable();
        let held = ids.into_iter().filter_map(|id| self.endpoints.get(id));
        held.filter(|s| s.valid).collect()
    }
}

/// Removes one listing of `id` at `key` from `index`.
fn forget<K: std::hash::Hash + Eq>(index: &mut FastMap<K, Vec<String>>, key: K, id: &str) {
    if let Some(ids) = index.get_mut(&key) {
        if let Some(i) = ids.iter().position(|x| x == id) {
            ids.swap_remove(i);
        }
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

/// Does the network have a service, defined in `state` or named by an endpoint?
fn has_services(net: &Network, endpoints: &[&Endpoint], state: &ClusterState) -> bool {
    endpoints.iter().any(|e| e.service.is_some()) || defines_services(net, state)
}

/// Does `state` define a service on `net`?
fn defines_services(net: &Network, state: &ClusterState) -> bool {
    state.services_of(&net.name).next().is_some()
}

/// What a re-projection in place changed.
#[derive(Debug, Default)]
pub(super) struct Reprojected {
    /// The owner names whose content changed.
    pub(super) names: BTreeSet<String>,
    /// Whether any endpoint changed what the projection reads of it.
    pub(super) any: bool,
    /// The members that left (or changed: their old selves).
    pub(super) left: Vec<Member>,
    /// The members that joined (or changed: their new selves).
    pub(super) joined: Vec<Member>,
}

/// Brings `part`, projected from `basis`, to the projection of `net` over `endpoints`,
/// recomputing only the owner names and members of the endpoints that changed. `None`, with
/// `part` and `basis` as they were, when it cannot: another network definition, services, or
/// two endpoints with one id (project the network whole).
pub(super) fn reproject(
    part: &mut NetworkZones,
    basis: &mut Basis,
    net: &Network,
    endpoints: &[&Endpoint],
    state: &ClusterState,
) -> Option<Reprojected> {
    if basis.net != *net || has_services(net, endpoints, state) {
        return None;
    }
    basis.passes += 1;
    let pass = basis.passes;
    // Which endpoints are new or read differently; only the pass marks change until the end of
    // this walk, so a duplicate id leaves the basis as it was.
    let mut fresh: Vec<&Endpoint> = Vec::new();
    for e in endpoints {
        match basis.endpoints.get_mut(&e.id) {
            Some(seen) if seen.pass == pass => return None,
            Some(seen) => {
                seen.pass = pass;
                if !seen.footprint.matches(e) {
                    fresh.push(e);
                }
            }
            None => fresh.push(e),
        }
    }
    let mut new_ids: Vec<&str> = (fresh.iter())
        .filter(|e| !basis.endpoints.contains_key(&e.id))
        .map(|e| e.id.as_str())
        .collect();
    new_ids.sort_unstable();
    if new_ids.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let gone: Vec<String> = (basis.endpoints.iter())
        .filter(|(_, seen)| seen.pass != pass)
        .map(|(id, _)| id.clone())
        .collect();
    Some(apply(part, basis, net, gone, fresh))
}

/// The same as [`reproject`] when only the endpoints with the ids in `ids` may have changed:
/// `with_id` gives the network's endpoints with an id (none when it is gone), and nothing else
/// is visited. `None`, with `part` and `basis` as they were, when a re-projection in place
/// cannot follow (another network definition, a service, one id on two endpoints).
pub(super) fn reproject_ids<'e>(
    part: &mut NetworkZones,
    basis: &mut Basis,
    net: &Network,
    ids: &BTreeSet<String>,
    with_id: &dyn Fn(&str) -> Vec<&'e Endpoint>,
    state: &ClusterState,
) -> Option<Reprojected> {
    if basis.net != *net || defines_services(net, state) {
        return None;
    }
    let (mut gone, mut fresh) = (Vec::new(), Vec::new());
    for id in ids {
        match with_id(id)[..] {
            [] if basis.endpoints.contains_key(id) => gone.push(id.clone()),
            [] => {}
            [e] if e.service.is_some() => return None,
            [e] if basis
                .endpoints
                .get(id)
                .is_some_and(|s| s.footprint.matches(e)) => {}
            [e] => fresh.push(e),
            _ => return None,
        }
    }
    Some(apply(part, basis, net, gone, fresh))
}

/// Takes the endpoints `gone` and the old selves of those `fresh` out of `basis` and `part`,
/// puts the `fresh` ones in, and recomputes the names any of them held or hold.
fn apply(
    part: &mut NetworkZones,
    basis: &mut Basis,
    net: &Network,
    gone: Vec<String>,
    fresh: Vec<&Endpoint>,
) -> Reprojected {
    let pass = basis.passes;
    let mut done = Reprojected::default();
    let (mut labels, mut ips) = (BTreeSet::new(), BTreeSet::new());
    let changed = fresh.iter().map(|e| e.id.clone());
    for id in gone.into_iter().chain(changed) {
        let Some(old) = basis.leave(&id) else {
            continue;
        };
        labels.extend(old.footprint.labels());
        ips.extend(old.footprint.ips());
        if let Some(m) = part.members.remove(&(id, 0)) {
            done.left.push(m);
        }
    }
    for e in fresh {
        let seen = basis.enter(net, e, pass);
        labels.extend(seen.footprint.labels());
        ips.extend(seen.footprint.ips());
        if seen.valid {
            let m = seen.footprint.member();
            part.members.insert((e.id.clone(), 0), m.clone());
            done.joined.push(m);
        }
    }
    done.any = !labels.is_empty();
    for label in labels {
        let held = basis.holders(&basis.by_label, &label);
        let records = held
            .iter()
            .flat_map(|s| s.footprint.addresses().map(|rd| (RECORD_TTL, rd)))
            .collect();
        put(part, fqdn(&label, &net.zone), records, &mut done.names);
    }
    for ip in ips {
        let held = basis.holders(&basis.by_ip, &ip);
        let records = held
            .iter()
            .filter_map(|s| target(net, &s.footprint.name))
            .map(|target| (RECORD_TTL, RData::PTR(PTR(target))))
            .collect();
        put(part, reverse_name(ip), records, &mut done.names);
    }
    done
}

/// Sets what `part` holds at `owner` (nothing: the owner goes), noting it in `changed` if that
/// differs from before.
fn put(
    part: &mut NetworkZones,
    owner: String,
    records: Vec<(u32, RData)>,
    changed: &mut BTreeSet<String>,
) {
    let before = part.owners.get(&owner);
    if records.is_empty() {
        if before.is_some() {
            part.owners.remove(&owner);
            changed.insert(owner);
        }
        return;
    }
    if before.is_some_and(|o| o.records == records) {
        return;
    }
    part.owners.insert(
        owner.clone(),
        Owner {
            records,
            order: None,
            note: None,
        },
    );
    changed.insert(owner);
}

#[cfg(test)]
#[path = "reproject_tests.rs"]
mod tests;
