//! Where the DNS owner reads endpoints: this node's from the registry, indexed by network and
//! id and counted per network (the networks this node's workloads are on) and kept current from
//! the registry's diffs, so an attach among 1,000 workloads visits one; the other nodes' from
//! the cluster.

use std::collections::{BTreeMap, BTreeSet};

use shibafu_overlay::dns::projection::Touched;
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::state::ClusterState;

use crate::registry::book::Entry;
use crate::registry::{self, LocalWorkloads};

/// An endpoint's key: its network and id.
type Key = (String, String);

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct LocalIndex {
    /// The workloads with an endpoint of each key (more than one only in a broken registry).
    holders: BTreeMap<Key, Vec<String>>,
    /// How many endpoints this node's workloads have on each network.
    per_network: BTreeMap<String, usize>,
}

/// `w`'s endpoints by key.
fn keyed(w: &Entry) -> BTreeMap<Key, &Endpoint> {
    let key = |e: &Endpoint| (e.network.clone(), e.id.clone());
    w.endpoints().map(|e| (key(e), e)).collect()
}

impl LocalIndex {
    /// The index of `local`.
    pub(super) fn of(local: &LocalWorkloads) -> LocalIndex {
        let mut index = LocalIndex::default();
        for w in local.values() {
            index.enter(w);
        }
        index
    }

    /// The networks this node's workloads are on.
    pub(super) fn networks(&self) -> impl Iterator<Item = &str> {
        self.per_network.keys().map(String::as_str)
    }

    /// The endpoints of `local` (the workloads this index follows) on `network` with `id`.
    pub(super) fn with_id<'a>(
        &self,
        local: &'a LocalWorkloads,
        network: &str,
        id: &str,
    ) -> Vec<&'a Endpoint> {
        let key = (network.to_string(), id.to_string());
        let workloads = self.holders.get(&key).into_iter().flatten();
        let held = workloads
            .filter_map(|w| local.get(w))
            .flat_map(Entry::endpoints);
        held.filter(|e| e.network == network && e.id == id)
            .collect()
    }

    /// Follows the registry from `old` to `new` (the workloads both share are not visited) and
    /// returns, per network, the ids of the endpoints whose record differs.
    pub(super) fn follow(
        &mut self,
        old: &LocalWorkloads,
        new: &LocalWorkloads,
    ) -> BTreeMap<String, Touched> {
        let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (before, after) in registry::changes(old, new) {
            if let Some(w) = before {
                self.leave(w);
            }
            if let Some(w) = after {
                self.enter(w);
            }
            let (was, is) = (before.map(keyed), after.map(keyed));
            let (was, is) = (was.unwrap_or_default(), is.unwrap_or_default());
            for key in was.keys().chain(is.keys()) {
                if was.get(key) != is.get(key) {
                    let (network, id) = key.clone();
                    touched.entry(network).or_default().insert(id);
                }
            }
        }
        let ids = |(network, ids)| (network, Touched::Endpoints(ids));
        touched.into_iter().map(ids).collect()
    }

    /// Notes workload `w`'s endpoints.
    fn enter(&mut self, w: &Entry) {
        for e in w.endpoints() {
            let key = (e.network.clone(), e.id.clone());
            self.holders.entry(key).or_default().push(w.name.clone());
            *self.per_network.entry(e.network.clone()).or_default() += 1;
        }
    }

    /// Forgets workload `w`'s endpoints.
    fn leave(&mut self, w: &Entry) {
        for e in w.endpoints() {
            let key = (e.network.clone(), e.id.clone());
            if let Some(names) = self.holders.get_mut(&key) {
                if let Some(i) = names.iter().position(|n| *n == w.name) {
                    names.swap_remove(i);
                }
                if names.is_empty() {
                    self.holders.remove(&key);
                }
            }
            if let Some(count) = self.per_network.get_mut(&e.network) {
                *count -= 1;
                if *count == 0 {
                    self.per_network.remove(&e.network);
                }
            }
        }
    }
}

/// The networks this node's (`node`) endpoints are on in the cluster: before the registry is
/// known, the only ones whose names anyone asks this node's DNS for.
pub(super) fn networks_of_node<'a>(state: &'a ClusterState, node: &str) -> BTreeSet<&'a str> {
    (state.endpoints().values())
        .filter(|e| e.node == node)
        .map(|e| e.network.as_str())
        .collect()
}

/// A network's endpoints: this node's (`node`) from the registry once it is known (`local`),
/// so they answer before etcd echoes them; the others' (and, before that, all) from the cluster.
pub(super) fn endpoints_with_local<'a>(
    state: &'a ClusterState,
    node: &'a str,
    local: Option<&'a LocalWorkloads>,
) -> impl Fn(&Network) -> Vec<&'a Endpoint> + 'a {
    move |n| match local {
        None => state.endpoints_of(&n.name).collect(),
        Some(local) => {
            let name = n.name.clone();
            state
                .endpoints_of(&n.name)
                .filter(|e| e.node != node)
                .chain(
                    local
                        .values()
                        .flat_map(|w| w.endpoints())
                        .filter(move |e| e.network == name),
                )
                .collect()
        }
    }
}

/// A network's endpoints with one id, found as [`endpoints_with_local`] lists them: this node's
/// from the registry through its index once it is known, the others' from the cluster.
pub(super) fn with_id_local<'a>(
    state: &'a ClusterState,
    node: &'a str,
    local: Option<(&'a LocalWorkloads, &'a LocalIndex)>,
) -> impl Fn(&Network, &str) -> Vec<&'a Endpoint> + 'a {
    move |n, id| {
        let remote = state.endpoint(&n.name, id).into_iter();
        match local {
            None => remote.collect(),
            Some((local, index)) => {
                let mut found: Vec<&Endpoint> = remote.filter(|e| e.node != node).collect();
                found.extend(index.with_id(local, &n.name, id));
                found
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{endpoint, workload};

    fn book(w: &[Entry]) -> LocalWorkloads {
        w.iter().map(|e| (e.name.clone(), e.clone())).collect()
    }

    fn ids(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Touched> {
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect();
        let entry = |(n, i): &(&str, &[&str])| (n.to_string(), Touched::Endpoints(set(i)));
        pairs.iter().map(entry).collect()
    }

    /// The index rebuilt from `local` agrees with `index` on every lookup a test makes.
    fn agrees(index: &LocalIndex, local: &LocalWorkloads) {
        let whole = LocalIndex::of(local);
        assert_eq!(index.holders, whole.holders);
        assert_eq!(index.per_network, whole.per_network);
    }

    #[test]
    fn changes_name_the_endpoints_that_differ_and_keep_the_index() {
        let api = workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")]);
        let web = workload("web", &[endpoint("frontend", "web", "node1", "172.21.0.2")]);
        let old = book(&[api.clone(), web.clone()]);
        let mut index = LocalIndex::of(&old);
        assert_eq!(
            index.networks().collect::<Vec<_>>(),
            ["backend", "frontend"]
        );
        assert!(index.follow(&old, &old.clone()).is_empty());
        let db = endpoint("data", "db", "node1", "172.23.0.2");
        let new = old.update("db".into(), workload("db", std::slice::from_ref(&db)));
        assert_eq!(index.follow(&old, &new), ids(&[("data", &[&db.id])]));
        agrees(&index, &new);
        assert_eq!(index.with_id(&new, "data", &db.id), vec![&db]);
        assert!(index.with_id(&new, "frontend", &db.id).is_empty());
        let joined = endpoint("frontend", "api", "node1", "172.21.0.3");
        let api_ep = api.interfaces[0].endpoint.clone();
        let moved = workload("api", &[api_ep, joined.clone()]);
        let after = new.update("api".into(), moved);
        assert_eq!(
            index.follow(&new, &after),
            ids(&[("frontend", &[&joined.id])]),
            "backend's record is the same"
        );
        agrees(&index, &after);
        let gone = after.without("web");
        let web_id = web.interfaces[0].endpoint.id.clone();
        assert_eq!(
            index.follow(&after, &gone),
            ids(&[("frontend", &[&web_id])])
        );
        agrees(&index, &gone);
        let empty = LocalWorkloads::new();
        index.follow(&gone, &empty);
        assert_eq!(index.networks().count(), 0, "nothing left");
        assert!(index.holders.is_empty());
    }
}
