//! An attach's plan without planning the whole host. When the cluster inputs are those of the
//! last clean reconcile, the only workloads that changed since are in the attaching namespace,
//! on networks already built here, and the networks in use stay the same, the host's desired
//! state is the settled one with that namespace's endpoints planned again: its networks and the
//! other namespaces' endpoints cannot have changed. Planning 1 container instead of 1,000 keeps an
//! attach's cost flat as containers accumulate on a node.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use imbl::ordmap::DiffItem;
use shibafu_overlay::firewall::PortBinding;
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::plan::{DesiredEndpoint, DesiredHost};
use shibafu_overlay::state::ClusterState;
use tracing::debug;

use super::{add_networks, local_containers, on_networks, Reconciler};
use crate::registry::book::Entry;
use crate::registry::LocalWorkloads;

/// What a plan was made from.
#[derive(Debug, Clone)]
pub(super) struct Basis {
    /// The cluster state.
    pub state: Arc<ClusterState>,
    /// This node's tunnel address.
    pub tunnel: Option<Ipv4Addr>,
    /// This node's workloads.
    pub local: Arc<LocalWorkloads>,
    /// The networks in use (built) here.
    pub in_use: Arc<BTreeSet<String>>,
    /// The networks this node's workloads are on (with the cluster, what `in_use` follows from).
    pub on: Arc<BTreeSet<String>>,
}

/// Are `a` and `b` the same namespace file? (Compared as the strings the book holds: a path
/// comparison parses components, and this runs for every workload.)
fn same_netns(a: &Path, b: &Path) -> bool {
    a.as_os_str() == b.as_os_str()
}

/// Is `e` in the namespace at `netns`?
fn in_netns(e: &Entry, netns: &Path) -> bool {
    same_netns(&e.netns, netns)
}

/// How the workloads changed between two registries, seen from one namespace.
enum Change<'a> {
    /// Something outside the namespace came, changed or went, or something in it went.
    Elsewhere,
    /// Only workloads in the namespace came: these.
    Added(Vec<&'a Entry>),
    /// Workloads in the namespace came or changed, and only there.
    Changed,
}

/// How the workloads changed from `before` to `now`, seen from `netns` (one walk of the
/// difference, not of every workload).
fn change_in<'a>(before: &LocalWorkloads, now: &'a LocalWorkloads, netns: &Path) -> Change<'a> {
    let mut added = Vec::new();
    let mut changed = false;
    for d in before.diff(now) {
        match d {
            DiffItem::Add(_, e) if in_netns(e, netns) => added.push(e),
            DiffItem::Update { old, new } if in_netns(old.1, netns) && in_netns(new.1, netns) => {
                changed = true
            }
            _ => return Change::Elsewhere,
        }
    }
    if changed {
        Change::Changed
    } else {
        Change::Added(added)
    }
}

/// Where `netns`'s endpoints are among `endpoints`, sorted by (namespace, interface) as a
/// whole plan has them: one run, found by search.
fn run_of(endpoints: &[DesiredEndpoint], netns: &Path) -> Range<usize> {
    let at = endpoints.partition_point(|e| e.netns.as_path() < netns);
    let run = endpoints[at..].partition_point(|e| e.netns.as_path() == netns);
    at..at + run
}

/// Does `plan` hold endpoints in `netns`?
fn has_endpoints_in(plan: &DesiredHost, netns: &Path) -> bool {
    let run = run_of(&plan.endpoints, netns);
    plan.endpoints[run]
        .iter()
        .any(|e| same_netns(&e.netns, netns))
}

impl Reconciler {
    /// The host's desired state after an attach into `netns`, spliced into the settled one
    /// (taken, so not copied) and remembered as planned; `None` when the attach must be planned whole: the cluster or
    /// the tunnel changed since, a workload elsewhere changed or went, a network of the attach
    /// is not built here yet, the networks in use change with it, or its plan fails or clashes
    /// (the whole plan then says why).
    pub(super) fn spliced(&mut self, netns: &Path) -> Option<Arc<DesiredHost>> {
        let (settled, basis) = self.settled.as_ref()?;
        if !Arc::ptr_eq(&basis.state, &self.state) || basis.tunnel != self.tunnel {
            return None;
        }
        let (entries, on) = match change_in(&basis.local, &self.local, netns) {
            Change::Elsewhere => return None,
            // A namespace new to the plan: its workloads are the ones that came, and the
            // networks in use are the settled ones and theirs (nothing went).
            Change::Added(added) if !has_endpoints_in(settled, netns) => {
                let mut on = BTreeSet::clone(&basis.on);
                add_networks(&mut on, added.iter().copied());
                (added, on)
            }
            _ => {
                let entries = self.local.values().filter(|e| in_netns(e, netns));
                (entries.collect(), on_networks(&self.local))
            }
        };
        let endpoints: Vec<Endpoint> = entries
            .iter()
            .flat_map(|e| e.endpoints().cloned())
            .collect();
        if endpoints
            .iter()
            .any(|ep| settled.network(&ep.network).is_none())
        {
            return None;
        }
        // The first container on a network built for a policy's sake brings that policy's
        // peers' networks into use (their replies are routed here): then plan the host.
        // With the same cluster, the same networks with workloads on them build the same ones.
        if on != *basis.on && self.in_use(&on) != *basis.in_use {
            return None;
        }
        let containers = local_containers(entries.into_iter());
        let part = match self.build(&containers, &endpoints, &basis.in_use) {
            Ok(part) => part,
            Err(e) => {
                debug!(error = %e, "planning the attach alone failed; planning the host");
                return None;
            }
        };
        let (settled, basis) = self.settled.take()?;
        // The guard's ports of the settled plan, when built for it, are edited, not rebuilt.
        let ports = match &self.planned {
            Some(planned) if Arc::ptr_eq(planned, &settled) => self.ports.take(),
            _ => None,
        };
        self.set_planned(None);
        let mut desired = Arc::unwrap_or_clone(settled);
        let run = run_of(&desired.endpoints, netns);
        let at = run.start;
        let (gone, kept): (Vec<DesiredEndpoint>, Vec<DesiredEndpoint>) = desired
            .endpoints
            .drain(run)
            .partition(|e| same_netns(&e.netns, netns));
        let clash = part.endpoints.iter().any(|p| {
            desired
                .endpoints
                .iter()
                .chain(&kept)
                .any(|e| e.host_ifname == p.host_ifname)
        });
        if clash {
            return None;
        }
        let ports = ports.map(|mut ports| {
            for e in &gone {
                ports.remove(&PortBinding::of(e));
            }
            for e in &part.endpoints {
                ports.insert(PortBinding::of(e));
            }
            ports
        });
        desired
            .endpoints
            .splice(at..at, kept.into_iter().chain(part.endpoints));
        self.basis = Some(Basis {
            local: self.local.clone(),
            on: Arc::new(on),
            ..basis
        });
        let desired = Arc::new(desired);
        self.set_planned(Some(desired.clone()));
        if let Some(ports) = ports {
            self.ports = ports.into();
        }
        Some(desired)
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
