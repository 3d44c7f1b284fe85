//! The networks' parts of a cluster kept current: a change re-projects only the networks it
//! touches (in place when it can), notes the owner names and the requesters' views it changed,
//! and the next snapshot patches the previous one at those alone.

use std::collections::{BTreeMap, BTreeSet};

use super::assemble::{assemble, assemble_with, builder_of};
use super::audience::Audience;
use super::authority::Authority;
use super::projection::{bare_zones, owners_changed, project_network, NetworkZones, View};
use super::reproject::{reproject, reproject_ids, Basis};
use super::{DnsError, Snapshot};
use crate::model::{admit, Endpoint, Network};
use crate::state::{ClusterState, StateChange};

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
    /// The members of the parts, for the views of the addresses a change touches.
    audience: Audience,
}

/// What changes touched in one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// Anything (its definition, links, services, health): it is re-projected from all its
    /// endpoints.
    Network,
    /// Only the endpoints with these ids (added, changed or removed).
    Endpoints(BTreeSet<String>),
}

impl Touched {
    /// Folds `other` into this.
    pub fn merge(&mut self, other: Touched) {
        match (&mut *self, other) {
            (Touched::Network, _) => {}
            (Touched::Endpoints(ids), Touched::Endpoints(more)) => ids.extend(more),
            (_, Touched::Network) => *self = Touched::Network,
        }
    }

    /// Notes in `touched` that `t` touched `network`, folded into what it already holds.
    pub fn note(touched: &mut BTreeMap<String, Touched>, network: &str, t: Touched) {
        match touched.get_mut(network) {
            Some(known) => known.merge(t),
            None => drop(touched.insert(network.to_string(), t)),
        }
    }

    /// Notes in `touched` what `change` touched: the endpoints an endpoint change names, in
    /// their networks; the whole networks any other change concerns.
    pub fn note_change(touched: &mut BTreeMap<String, Touched>, change: &StateChange) {
        match change {
            StateChange::Endpoint(c) => {
                for e in c.values() {
                    let ids = Touched::Endpoints(BTreeSet::from([e.id.clone()]));
                    Touched::note(touched, &e.network, ids);
                }
            }
            _ => {
                for network in change.networks() {
                    Touched::note(touched, network, Touched::Network);
                }
            }
        }
    }
}

/// Tells `audience` how the members of a network's part changed from `old` to `new` (`None`:
/// no part).
fn members_changed(
    audience: &mut Audience,
    old: Option<&NetworkZones>,
    new: Option<&NetworkZones>,
) {
    let none = BTreeMap::new();
    let (was, is) = (
        old.map_or(&none, |p| &p.members),
        new.map_or(&none, |p| &p.members),
    );
    if let Some(old) = old {
        for (_, m) in was.iter().filter(|(k, m)| is.get(*k) != Some(*m)) {
            audience.remove(&old.network, m);
        }
    }
    if let Some(new) = new {
        for (_, m) in is.iter().filter(|(k, m)| was.get(*k) != Some(*m)) {
            audience.add(&new.network, m);
        }
    }
}

impl Projection {
    /// No network yet.
    pub fn new() -> Projection {
        Projection::default()
    }

    /// The networks projected (`None`: every network).
    pub fn scope(&self) -> Option<&BTreeSet<String>> {
        self.scope.as_ref()
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
        let whole =
            |t: &BTreeSet<String>| t.iter().map(|n| (n.clone(), Touched::Network)).collect();
        let touched: Option<BTreeMap<String, Touched>> = touched.map(whole);
        self.update_by_id(state, touched.as_ref(), endpoints_of, &|_, _| Vec::new())
    }

    /// The same, told per network what changed: where only some endpoints did, and the
    /// network's part can be re-projected in place, `with_id` gives the network's endpoints
    /// with each changed id (none when it is gone) and no other endpoint is visited.
    pub fn update_by_id<'s>(
        &mut self,
        state: &'s ClusterState,
        touched: Option<&BTreeMap<String, Touched>>,
        endpoints_of: &dyn Fn(&'s Network) -> Vec<&'s Endpoint>,
        with_id: &dyn Fn(&'s Network, &str) -> Vec<&'s Endpoint>,
    ) -> bool {
        let (admitted, _) = admit(state.networks().values());
        let in_scope = |name: &str| self.scope.as_ref().is_none_or(|s| s.contains(name));
        let (wanted, outside): (Vec<&Network>, Vec<&Network>) =
            admitted.into_iter().partition(|n| in_scope(&n.name));
        let before = (self.parts.len(), self.bare.len());
        let dropped: Vec<String> = (self.parts.keys())
            .filter(|name| !wanted.iter().any(|n| n.name == **name))
            .cloned()
            .collect();
        for name in dropped {
            let gone = self.parts.remove(&name);
            members_changed(&mut self.audience, gone.as_ref(), None);
        }
        self.bare
            .retain(|name, _| outside.iter().any(|n| n.name == *name));
        self.bases.retain(|name, _| self.parts.contains_key(name));
        let mut changed = (self.parts.len(), self.bare.len()) != before;
        if changed {
            self.changed_names = None;
        }
        for net in wanted {
            let touch = touched.map(|t| t.get(&net.name));
            if touch.is_some_and(|t| t.is_none()) && self.parts.contains_key(&net.name) {
                continue;
            }
            let ids = match touch {
                Some(Some(Touched::Endpoints(ids))) => Some(ids),
                _ => None,
            };
            let known = (self.parts.get_mut(&net.name)).zip(self.bases.get_mut(&net.name));
            let mut listed = None;
            let in_place = known.and_then(|(part, basis)| {
                let by_id = |id: &str| with_id(net, id);
                ids.and_then(|ids| reproject_ids(part, basis, net, ids, &by_id, state))
                    .or_else(|| {
                        let eps = listed.insert(endpoints_of(net));
                        reproject(part, basis, net, eps, state)
                    })
            });
            if let Some(done) = in_place {
                for m in &done.left {
                    self.audience.remove(&net.name, m);
                }
                for m in &done.joined {
                    self.audience.add(&net.name, m);
                }
                if let Some(since) = &mut self.changed_names {
                    since.extend(done.names);
                }
                changed |= done.any;
                continue;
            }
            let eps = listed.unwrap_or_else(|| endpoints_of(net));
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
            members_changed(&mut self.audience, self.parts.get(&net.name), Some(&part));
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
        let clients = self.audience.take_changed();
        let patched = match (&self.changed_names, clients) {
            (Some(names), Some(clients)) if follows => {
                let mut b = builder_of(self.all_parts(), authority, Some(names));
                if view == View::Members {
                    let parts = &self.parts;
                    let zones_of = |n: &str| parts.get(n).map(|p| &p.zones[..]);
                    self.audience.add_views(&mut b, Some(&clients), zones_of);
                    b.revise_views(clients);
                }
                b.build_over(previous, names.iter().map(String::as_str))
            }
            _ => Ok(None),
        };
        let built = match patched {
            Ok(Some(snap)) => Ok(snap),
            Ok(None) => self.snapshot_with(view, authority),
            Err(e) => Err(e),
        };
        let snap = match built {
            Ok(snap) => snap,
            Err(e) => {
                // What changed since `previous` is not in any snapshot: the next one is whole.
                self.changed_names = None;
                self.audience.lose_track();
                return Err(e);
            }
        };
        self.changed_names = Some(BTreeSet::new());
        self.last = Some((snap.generation(), view, authority.clone()));
        Ok(snap)
    }
}
