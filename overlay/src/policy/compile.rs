//! Compiles the cluster's policies into one node's policy table (pure).
//!
//! Where each rule runs: a node checks the egress rules of the connections its own endpoints
//! open and the ingress rules of those its own endpoints receive (so a connection across nodes
//! is judged once on each side and counted once per rule), plus, for a destination on another
//! node, whether one of its allow-ingress rules consents (the source's node routes between
//! networks, so it must let a consented connection past the link rules).
//!
//! Decisions travel to shibafu's main table in packet marks:
//! - `TRACK` (raw prerouting): the packet is on a policed network, keep it tracked;
//! - `EGRESS` / `INGRESS`: an allow rule of the source's egress / the destination's ingress
//!   matched (isolation drops what has neither where it needs one);
//! - `CONSENT`: a policy lets the connection through (or it is the reply of one); the main
//!   table's forward chain accepts it before its link rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::rules::{Builder, Members, Operands};
use super::table::Table;
use super::{effective_policies, selects, STRICT_PREFIX};
use crate::model::{Endpoint, Network, Peer, Policy};

/// Mark bit: keep tracked (policed network).
pub const MARK_TRACK: u32 = 0x0100_0000;
/// Mark bit: an allow-egress rule of the source matched.
pub const MARK_EGRESS: u32 = 0x0200_0000;
/// Mark bit: an allow-ingress rule of the destination matched.
pub const MARK_INGRESS: u32 = 0x0400_0000;
/// Mark bit: a policy lets the connection through.
pub const MARK_CONSENT: u32 = 0x0800_0000;

/// The counters of one stored policy in a compiled table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCounterNames {
    /// The policy.
    pub policy: String,
    /// One counter per rule, in the policy's order.
    pub rules: Vec<String>,
    /// The counter of isolation drops.
    pub isolation: String,
}

/// A node's policy table and the counters it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// The table.
    pub table: Table,
    /// Counters of the stored policies (not of the implicit `strict` ones).
    pub counters: Vec<PolicyCounterNames>,
}

/// Compiles the policy table of `node`. Policies on unknown networks are left out; a peer
/// naming something that does not exist (yet) is an empty set, filled when it appears.
pub fn compile(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    policies: &[&Policy],
    node: &str,
) -> Compiled {
    let policies = effective_policies(networks.iter().copied(), policies.iter().copied());
    if policies.is_empty() {
        return Compiled::default();
    }
    let policed: BTreeSet<&str> = policies.iter().map(|p| p.network.as_str()).collect();
    // Without an IPv6 network no endpoint has IPv6: no IPv6 sets or rules (half the table).
    let mut c = Builder::new(networks.iter().any(|n| n.subnet6.is_some()));
    let subnets = |n: &Network| -> Vec<IpNet> {
        std::iter::once(IpNet::V4(n.subnet))
            .chain(n.subnet6.map(IpNet::V6))
            .collect()
    };
    let tracked = networks
        .iter()
        .filter(|n| policed.contains(n.name.as_str()))
        .flat_map(|n| subnets(n))
        .collect();
    c.sets(
        "tracked",
        Members {
            nets: true,
            items: tracked,
        },
    );
    let local = endpoints
        .iter()
        .filter(|e| e.node == node && policed.contains(e.network.as_str()))
        .flat_map(|e| addresses(e))
        .collect();
    c.sets(
        "local",
        Members {
            nets: false,
            items: local,
        },
    );
    // Indexed once, so a change costs the size of the sets, not rules x endpoints.
    let mut by_service: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
    for e in endpoints {
        if let Some(s) = &e.service {
            by_service.entry(s).or_default().push(e);
        }
        by_name.entry(&e.name).or_default().push(e);
    }
    let nets_of = |name: &str| -> Vec<IpNet> {
        networks
            .iter()
            .filter(|x| x.name == name)
            .flat_map(|x| subnets(x))
            .collect()
    };
    let eps = |list: Option<&Vec<&Endpoint>>, keep: &dyn Fn(&Endpoint) -> bool| -> Vec<IpNet> {
        list.into_iter()
            .flatten()
            .filter(|e| keep(e))
            .flat_map(|e| addresses(e))
            .collect()
    };
    // Networks and CIDRs are fixed prefixes, written into the rules; services and containers
    // are address sets, one per peer however many rules name it, filled as endpoints come.
    let peer = |c: &mut Builder, peer: &Peer| -> Option<Operands> {
        match peer {
            Peer::Any => None,
            Peer::Cidr(n) => Some(c.inline(&[*n])),
            Peer::Network(n) => Some(c.inline(&nets_of(n))),
            Peer::Service(s) => Some(c.shared_sets(&format!("svc_{}", label_id(s)), || {
                eps(by_service.get(s.as_str()), &|_| true)
            })),
            Peer::Container(n) => Some(c.shared_sets(&format!("ctr_{}", label_id(n)), || {
                eps(by_name.get(n.as_str()), &|_| true)
            })),
        }
    };
    let mut counters = Vec::new();
    for p in &policies {
        let id = policy_id(&p.name);
        let sel = match &p.service {
            None => c.inline(&nets_of(&p.network)),
            Some(s) => c.sets(
                &format!("{id}_sel"),
                Members {
                    nets: false,
                    items: eps(by_service.get(s.as_str()), &|e| selects(p, e)),
                },
            ),
        };
        // A rule's counter is named after its text too, so a changed rule counts afresh.
        let rule_counters: Vec<String> = p
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("c{id}_r{i}_{:08x}", fnv1a(&r.to_string())))
            .collect();
        let iso = format!("c{id}_iso");
        for (i, r) in p.rules.iter().enumerate() {
            let peer = peer(&mut c, &r.peer);
            c.rule(&id, &sel, r, peer.as_ref(), &rule_counters[i]);
        }
        c.isolation(&sel, p, &iso);
        c.table.counters.extend(rule_counters.iter().cloned());
        c.table.counters.insert(iso.clone());
        if !p.name.starts_with(STRICT_PREFIX) {
            counters.push(PolicyCounterNames {
                policy: p.name.clone(),
                rules: rule_counters,
                isolation: iso,
            });
        }
    }
    c.finish();
    Compiled {
        table: c.table,
        counters,
    }
}

/// Addresses of an endpoint as one-address prefixes.
fn addresses(e: &Endpoint) -> Vec<IpNet> {
    std::iter::once(IpAddr::V4(e.ipv4))
        .chain(e.ipv6.map(IpAddr::V6))
        .map(IpNet::from)
        .collect()
}

/// A policy's name in set, chain and counter names: `p_<name>`, `s_<network>` for a
/// network's `strict` policy.
fn policy_id(name: &str) -> String {
    match name.strip_prefix(STRICT_PREFIX) {
        Some(net) => format!("s_{}", label_id(net)),
        None => format!("p_{}", label_id(name)),
    }
}

/// A DNS label as an nft identifier part: `-` as `_` (labels have no `_`: one to one).
fn label_id(label: &str) -> String {
    label.replace('-', "_")
}

/// FNV-1a, 32 bits: a short, stable digest of a rule's text.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
