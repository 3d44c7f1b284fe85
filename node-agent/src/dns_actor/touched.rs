//! What the cluster's changes touch in this node's DNS: per network, the endpoints a change
//! names (re-projected by id) or the whole network; nothing for changes DNS does not read.

use std::collections::BTreeMap;

use shibafu_overlay::dns::projection::Touched;
use shibafu_overlay::state::StateChange;

/// Networks waiting to be re-projected.
#[derive(Debug, Default)]
pub(super) enum Pending {
    /// Nothing.
    #[default]
    Nothing,
    /// These networks, each wholly or at some endpoints.
    Some(BTreeMap<String, Touched>),
    /// Every network.
    All,
}

impl Pending {
    /// Folds `more` into what is pending.
    pub(super) fn add(&mut self, more: Pending) {
        match (&mut *self, more) {
            (_, Pending::Nothing) | (Pending::All, _) => {}
            (_, Pending::All) => *self = Pending::All,
            (Pending::Nothing, more) => *self = more,
            (Pending::Some(known), Pending::Some(more)) => {
                for (network, t) in more {
                    Touched::note(known, &network, t);
                }
            }
        }
    }

    /// `touched`, or nothing when it is empty.
    pub(super) fn of(touched: BTreeMap<String, Touched>) -> Pending {
        match touched.is_empty() {
            true => Pending::Nothing,
            false => Pending::Some(touched),
        }
    }
}

/// What `changes` may change: every network for a whole listing (no changes listed), else per
/// network the endpoints named by endpoint changes, or the whole network for other changes
/// that concern DNS; nothing when none does (this node's own endpoints coming back from etcd,
/// say: nothing to re-project).
pub(super) fn touched_by(changes: &[StateChange], node: &str, book_known: bool) -> Pending {
    if changes.is_empty() {
        return Pending::All;
    }
    let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
    for c in changes.iter().filter(|c| !leaves_dns(c, node, book_known)) {
        Touched::note_change(&mut touched, c);
    }
    Pending::of(touched)
}

/// Does `change` leave the snapshot as it is? Those that do not project to DNS do
/// ([`StateChange::projects_to_dns`]), and once the registry is known (`book_known`) this
/// node's (`node`) endpoints come from it, not from the cluster (the watch echoing an attach
/// would otherwise rebuild a second time).
fn leaves_dns(change: &StateChange, node: &str, book_known: bool) -> bool {
    !change.projects_to_dns() || (book_known && change.is_endpoint_of(node))
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::model::{Endpoint, Network};
    use shibafu_overlay::state::Change;

    use super::*;

    fn ep(node: &str) -> Endpoint {
        Endpoint::new("frontend", "api", node, "172.21.0.2".parse().expect("ip"))
    }

    #[test]
    fn only_own_endpoints_and_blocks_leave_the_snapshot_alone() {
        let own = StateChange::Endpoint(Change::Added(ep("node1")));
        let other = StateChange::Endpoint(Change::Added(ep("node2")));
        assert!(leaves_dns(&own, "node1", true));
        assert!(
            !leaves_dns(&own, "node1", false),
            "before the book, from etcd"
        );
        assert!(!leaves_dns(&other, "node1", true));
        let moved = StateChange::Endpoint(Change::Updated {
            old: ep("node1"),
            new: ep("node2"),
        });
        assert!(!leaves_dns(&moved, "node1", true));
        let net = StateChange::Network(Change::Added(Network::new(
            "b",
            "172.22.0.0/24".parse().expect("net"),
            1,
        )));
        assert!(!leaves_dns(&net, "node1", true));
    }

    #[test]
    fn endpoint_changes_name_their_ids_and_others_the_whole_network() {
        let own = StateChange::Endpoint(Change::Added(ep("node1")));
        let other = ep("node2");
        let id = other.id.clone();
        let added = StateChange::Endpoint(Change::Added(other));
        assert!(matches!(
            touched_by(std::slice::from_ref(&own), "node1", true),
            Pending::Nothing
        ));
        assert!(matches!(touched_by(&[], "node1", true), Pending::All));
        let by_id = |ids: &[&str]| {
            let ids = ids.iter().map(|s| s.to_string()).collect();
            BTreeMap::from([("frontend".to_string(), Touched::Endpoints(ids))])
        };
        match touched_by(&[own.clone(), added.clone()], "node1", true) {
            Pending::Some(t) => assert_eq!(t, by_id(&[&id])),
            _ => panic!("another node's endpoint touches its network"),
        }
        match touched_by(std::slice::from_ref(&own), "node1", false) {
            Pending::Some(t) => assert_eq!(t, by_id(&[&ep("node1").id])),
            _ => panic!("before the book, this node's endpoints come from etcd"),
        }
        let net = Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 1);
        let defined = StateChange::Network(Change::Updated {
            old: net.clone(),
            new: net,
        });
        let mut pending = touched_by(&[added], "node1", true);
        pending.add(touched_by(&[defined], "node1", true));
        match pending {
            Pending::Some(t) => assert_eq!(t["frontend"], Touched::Network),
            _ => panic!("a network's change touches it whole"),
        }
    }
}
