//! Which cluster changes can change what this host builds. In a large cluster most changes are
//! endpoints coming and going on networks this node does not build; the persistent maps of the
//! cluster state share every untouched subtree, so comparing two states costs the changes
//! between them, not the cluster's size, and such a change is recognised without planning.

use std::sync::Arc;

use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use shibafu_overlay::plan::in_use_reads_endpoints;
use shibafu_overlay::state::ClusterState;

use super::splice::Basis;
use super::Reconciler;

/// Are two maps of the cluster state alike (the same tree, or equal content)?
fn same<K: Ord + Clone, V: PartialEq + Clone>(a: &OrdMap<K, V>, b: &OrdMap<K, V>) -> bool {
    a.ptr_eq(b) || a == b
}

/// Can the firewall part built from `was` differ from one built from `now` (their networks,
/// links, nodes or coordinators differ)?
pub(super) fn firewall_inputs_differ(was: &ClusterState, now: &ClusterState) -> bool {
    !(same(was.networks(), now.networks())
        && same(was.links(), now.links())
        && same(was.nodes(), now.nodes())
        && same(was.coordinators(), now.coordinators()))
}

/// Would planning host `node` from `now`, with the tunnel and workloads of `was`, give the
/// plan made from `was`? True when the networks, nodes, links and policies are alike and every
/// endpoint that changed is on a network not built here or is this node's own (the plan takes
/// those from the node's book; the actor drops a batch of nothing else, `only_own_endpoints`,
/// so the next change's state carries them), and the networks built here cannot depend on
/// endpoints (no policy names its peers by service or container).
pub(super) fn plans_alike(was: &Basis, now: &ClusterState, node: &str) -> bool {
    let before = was.state.as_ref();
    if std::ptr::eq(before, now) {
        return true;
    }
    if !(same(before.networks(), now.networks())
        && same(before.nodes(), now.nodes())
        && same(before.links(), now.links())
        && same(before.policies(), now.policies()))
        || in_use_reads_endpoints(now.policies().values())
    {
        return false;
    }
    before.endpoints().diff(now.endpoints()).all(|d| {
        let ((network, _), own) = match d {
            DiffItem::Add(k, e) | DiffItem::Remove(k, e) => (k, e.node == node),
            DiffItem::Update { old, new } => (new.0, old.1.node == node && new.1.node == node),
        };
        own || !was.in_use.contains(network)
    })
}

impl Reconciler {
    /// Takes the current cluster state as the settled plan's basis when it plans alike (see
    /// [`plans_alike`]): the kernel already holds that plan, so there is nothing to do. False
    /// when there is no settled plan or the change may concern this host.
    pub(super) fn settled_covers_change(&mut self) -> bool {
        let Some((_, was)) = self.settled.as_mut() else {
            return false;
        };
        if was.tunnel != self.tunnel
            || !Arc::ptr_eq(&was.local, &self.local)
            || !plans_alike(was, &self.state, &self.cfg.node)
        {
            return false;
        }
        was.state = self.state.clone();
        self.basis = Some(was.clone());
        true
    }
}

#[cfg(test)]
#[path = "inputs_tests.rs"]
mod tests;
