//! Network policies: what they mean (the oracle, one pure function) and how a node enforces
//! them (the nftables table it compiles to, and the diff between two such tables).
//!
//! A network is *policed* when a policy selects endpoints on it or it is `isolation: strict`.
//! Only policed networks leave today's fast path: their bridged frames go through the inet
//! hooks (per-bridge `nf_call_iptables`, set by the dataplane) and their same-network traffic is
//! tracked, so replies of a passed connection pass.

mod backend;
mod compile;
#[cfg(test)]
#[path = "interp_tests.rs"]
mod interp_tests;
mod oracle;
mod rules;
mod table;

use std::collections::BTreeSet;

pub use backend::{parse_counters, FakePolicyBackend, PolicyBackend, PolicyEnforcer};
pub use compile::{
    compile, Compiled, PolicyCounterNames, MARK_CONSENT, MARK_EGRESS, MARK_INGRESS, MARK_TRACK,
};
pub use oracle::{explain, verdict, Decision, Flow, FlowProto, PolicyView, Reason, Verdict};
pub use table::{
    render_diff, render_full, render_removal, Chain, Set, SetKind, Table, POLICY_TABLE,
};

use crate::model::{Action, Direction, Endpoint, Isolation, Network, Peer, Policy, Proto, Rule};

/// Names of the networks whose traffic policies govern: every network a policy selects
/// endpoints on, and every `isolation: strict` network (that exists).
pub fn policed_networks<'a>(
    networks: impl IntoIterator<Item = &'a Network>,
    policies: impl IntoIterator<Item = &'a Policy>,
) -> BTreeSet<String> {
    effective_policies(networks, policies)
        .into_iter()
        .map(|p| p.network)
        .collect()
}

/// Does policy `p` select endpoint `e`?
pub fn selects(p: &Policy, e: &Endpoint) -> bool {
    e.network == p.network
        && p.service
            .as_ref()
            .is_none_or(|s| e.service.as_ref() == Some(s))
}

/// The policies in force: the stored ones on networks that exist, plus one per `strict`
/// network allowing ingress from the network itself (named `strict.<network>`, which no
/// stored policy can be named: names are DNS labels).
pub fn effective_policies<'a>(
    networks: impl IntoIterator<Item = &'a Network>,
    policies: impl IntoIterator<Item = &'a Policy>,
) -> Vec<Policy> {
    let networks: Vec<&Network> = networks.into_iter().collect();
    let known: BTreeSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
    let mut out: Vec<Policy> = policies
        .into_iter()
        .filter(|p| known.contains(p.network.as_str()))
        .cloned()
        .collect();
    out.extend(
        networks
            .iter()
            .filter(|n| n.isolation == Isolation::Strict)
            .map(|n| strict_policy(&n.name)),
    );
    out
}

/// Prefix of the implicit policies of `strict` networks.
pub const STRICT_PREFIX: &str = "strict.";

/// The implicit policy of a `strict` network.
fn strict_policy(network: &str) -> Policy {
    let rule = Rule {
        action: Action::Allow,
        direction: Direction::Ingress,
        peer: Peer::Network(network.to_string()),
        ports: Vec::new(),
        proto: Proto::Any,
    };
    Policy::new(&format!("{STRICT_PREFIX}{network}"), network, vec![rule])
}
