//! Who may see which zones: every member's addresses and the networks its workload is on,
//! kept as members come and go, so a change re-derives the views of the addresses it touches
//! instead of every member's.
//!
//! A requester asking from an address sees the zones of every network the workloads holding
//! that address are on (a workload is its node and name: on several networks it is one member
//! on each, and sees all of them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::projection::{Member, NetworkZones};
use super::SnapshotBuilder;

/// A workload: its node and name.
type Workload = (String, String);

/// The members of the networks in view; see the module documentation.
#[derive(Debug, Clone)]
pub(super) struct Audience {
    /// By workload: the network and address of each of its members' addresses.
    networks: BTreeMap<Workload, Vec<(String, IpAddr)>>,
    /// By address: the workloads asking from it, once per member holding it.
    clients: BTreeMap<IpAddr, Vec<Workload>>,
    /// Addresses whose view may have changed since [`Audience::take_changed`]; `None`: any.
    changed: Option<BTreeSet<IpAddr>>,
}

impl Default for Audience {
    fn default() -> Self {
        Audience {
            networks: BTreeMap::new(),
            clients: BTreeMap::new(),
            changed: Some(BTreeSet::new()),
        }
    }
}

/// The workload `m` is a member of.
fn workload(m: &Member) -> Workload {
    (m.node.clone(), m.name.clone())
}

impl Audience {
    /// The audience of `parts`, each with its network's name.
    pub(super) fn of<'a>(parts: impl IntoIterator<Item = &'a NetworkZones>) -> Audience {
        let mut a = Audience::default();
        for p in parts {
            for m in p.members.values() {
                a.add(&p.network, m);
            }
        }
        a
    }

    /// Notes that `m` is a member of `network`.
    pub(super) fn add(&mut self, network: &str, m: &Member) {
        let w = workload(m);
        for ip in &m.addrs {
            let ip = ip.to_canonical();
            let held = self.networks.entry(w.clone()).or_default();
            held.push((network.to_string(), ip));
            self.clients.entry(ip).or_default().push(w.clone());
        }
        self.touch(&w);
    }

    /// Notes that `m` is no longer a member of `network` (one such member, if several).
    pub(super) fn remove(&mut self, network: &str, m: &Member) {
        let w = workload(m);
        self.touch(&w);
        for ip in &m.addrs {
            let ip = ip.to_canonical();
            if let Some(held) = self.networks.get_mut(&w) {
                if let Some(i) = held.iter().position(|(n, a)| n == network && *a == ip) {
                    held.swap_remove(i);
                }
                if held.is_empty() {
                    self.networks.remove(&w);
                }
            }
            if let Some(workloads) = self.clients.get_mut(&ip) {
                if let Some(i) = workloads.iter().position(|x| *x == w) {
                    workloads.swap_remove(i);
                }
                if workloads.is_empty() {
                    self.clients.remove(&ip);
                }
            }
        }
    }

    /// Notes every address of workload `w` as changed: its view lists all its networks.
    fn touch(&mut self, w: &Workload) {
        if let (Some(changed), Some(held)) = (&mut self.changed, self.networks.get(w)) {
            changed.extend(held.iter().map(|(_, ip)| *ip));
        }
    }

    /// The networks a requester at `client` sees (none: it is no member's address).
    pub(super) fn networks_seen(&self, client: IpAddr) -> BTreeSet<&str> {
        self.clients
            .get(&client)
            .into_iter()
            .flatten()
            .filter_map(|w| self.networks.get(w))
            .flatten()
            .map(|(network, _)| network.as_str())
            .collect()
    }

    /// Every address with the networks it sees, and whether any workload is left without one.
    #[cfg(test)]
    pub(super) fn seen_by_all(&self) -> (Vec<(IpAddr, BTreeSet<&str>)>, bool) {
        let seen = self.clients.keys().map(|c| (*c, self.networks_seen(*c)));
        (seen.collect(), self.networks.values().any(Vec::is_empty))
    }

    /// The addresses whose view may have changed since the last call (`None`: any may have),
    /// starting a new record.
    pub(super) fn take_changed(&mut self) -> Option<BTreeSet<IpAddr>> {
        self.changed.replace(BTreeSet::new())
    }

    /// Forgets which addresses changed: the next [`Audience::take_changed`] says any may have.
    pub(super) fn lose_track(&mut self) {
        self.changed = None;
    }

    /// Gives `b` the view of each of `clients` (every member's address when `None`); the zones
    /// of a network come from `zones_of`. Requesters seeing the same networks share one list.
    pub(super) fn add_views<'z>(
        &self,
        b: &mut SnapshotBuilder,
        clients: Option<&BTreeSet<IpAddr>>,
        zones_of: impl Fn(&str) -> Option<&'z [String]>,
    ) {
        let mut lists: BTreeMap<BTreeSet<&str>, Arc<[String]>> = BTreeMap::new();
        let mut view = |client: IpAddr| {
            let seen = self.networks_seen(client);
            if seen.is_empty() {
                return;
            }
            let zones = lists.entry(seen).or_insert_with_key(|seen| {
                let zones: BTreeSet<&String> =
                    seen.iter().filter_map(|n| zones_of(n)).flatten().collect();
                zones.into_iter().cloned().collect()
            });
            b.view_shared(client, Arc::clone(zones));
        };
        match clients {
            Some(clients) => clients.iter().for_each(|c| view(*c)),
            None => self.clients.keys().for_each(|c| view(*c)),
        }
    }
}

#[cfg(test)]
#[path = "audience_tests.rs"]
mod tests;
