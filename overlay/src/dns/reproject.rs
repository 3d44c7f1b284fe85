//! Re-projecting a network in place: for a network without services, a change of its endpoints
//! recomputes only the names the changed endpoints held or hold (their names, aliases and
//! PTRs), exactly as [`project_network`](super::projection::project_network) would have them,
//! instead of projecting every endpoint again.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData};

use super::hash::{FastMap, FastSet};
use super::projection::{addresses, fqdn, member_of, NetworkZones, Owner, RECORD_TTL};
use super::reverse_name;
use crate::model::{Endpoint, Network};
use crate::state::ClusterState;

/// What a network without services was last projected from: its definition and its endpoints
/// by id, each with whether its name is a valid DNS name (an endpoint whose name is not is left
/// out of the projection).
#[derive(Debug, Clone)]
pub(super) struct Basis {
    net: Network,
    endpoints: FastMap<String, (Endpoint, bool)>,
}

/// The name `e`'s PTR records point at, if its name makes a valid DNS name in `net`.
fn target(net: &Network, e: &Endpoint) -> Option<Name> {
    Name::from_ascii(fqdn(&e.name, &net.zone)).ok()
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
        let mut by_id = FastMap::default();
        for e in endpoints {
            let valid = target(net, e).is_some();
            if by_id.insert(e.id.clone(), ((*e).clone(), valid)).is_some() {
                return None;
            }
        }
        Some(Basis {
            net: net.clone(),
            endpoints: by_id,
        })
    }
}

/// Does the network have a service, defined in `state` or named by an endpoint?
fn has_services(net: &Network, endpoints: &[&Endpoint], state: &ClusterState) -> bool {
    endpoints.iter().any(|e| e.service.is_some())
        || state.services().values().any(|s| s.network == net.name)
}

/// Brings `part`, projected from `basis`, to the projection of `net` over `endpoints`,
/// recomputing only the owner names of the endpoints that changed; returns the owner names
/// whose content changed and whether any endpoint did. `None`, with `part` and `basis`
/// untouched, when it cannot: another network definition, services, or two endpoints with one
/// id (project the network whole).
pub(super) fn reproject(
    part: &mut NetworkZones,
    basis: &mut Basis,
    net: &Network,
    endpoints: &[&Endpoint],
    state: &ClusterState,
) -> Option<(BTreeSet<String>, bool)> {
    if basis.net != *net || has_services(net, endpoints, state) {
        return None;
    }
    let mut ids: FastSet<&str> = FastSet::default();
    if !endpoints.iter().all(|e| ids.insert(&e.id)) {
        return None;
    }
    let mut labels: BTreeSet<String> = BTreeSet::new();
    let mut ips: BTreeSet<IpAddr> = BTreeSet::new();
    let mut footprint = |e: &Endpoint| {
        for label in std::iter::once(&e.name).chain(&e.aliases) {
            labels.insert(label.to_ascii_lowercase());
        }
        ips.insert(IpAddr::V4(e.ipv4));
        ips.extend(e.ipv6.map(IpAddr::V6));
    };
    let gone: Vec<String> = basis
        .endpoints
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .cloned()
        .collect();
    for id in &gone {
        if let Some((old, _)) = basis.endpoints.remove(id) {
            footprint(&old);
        }
    }
    for e in endpoints {
        match basis.endpoints.get_mut(&e.id) {
            Some((old, _)) if *old == **e => {}
            Some(old) => {
                footprint(&old.0);
                footprint(e);
                *old = ((*e).clone(), target(net, e).is_some());
            }
            None => {
                footprint(e);
                let valid = target(net, e).is_some();
                basis.endpoints.insert(e.id.clone(), ((*e).clone(), valid));
            }
        }
    }
    let mut changed = BTreeSet::new();
    if labels.is_empty() {
        return Some((changed, false));
    }
    let valid = |e: &Endpoint| basis.endpoints.get(&e.id).is_some_and(|(_, v)| *v);
    for label in labels {
        let owner = fqdn(&label, &net.zone);
        let mut records = Vec::new();
        for e in endpoints.iter().filter(|e| valid(e)) {
            for l in std::iter::once(&e.name).chain(&e.aliases) {
                if l.eq_ignore_ascii_case(&label) {
                    records.extend(addresses(e).map(|rd| (RECORD_TTL, rd)));
                }
            }
        }
        put(part, owner, records, &mut changed);
    }
    for ip in ips {
        let mut records = Vec::new();
        for e in endpoints {
            let holds = IpAddr::V4(e.ipv4) == ip || e.ipv6.map(IpAddr::V6) == Some(ip);
            if let Some(target) = holds.then(|| target(net, e)).flatten() {
                records.push((RECORD_TTL, RData::PTR(PTR(target))));
            }
        }
        put(part, reverse_name(ip), records, &mut changed);
    }
    part.members = endpoints
        .iter()
        .filter(|e| valid(e))
        .map(|e| member_of(e))
        .collect();
    Some((changed, true))
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
