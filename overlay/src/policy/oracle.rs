//! The oracle: whether a new connection passes, as one pure function of the cluster's
//! networks, links, endpoints and policies. The nftables the nodes load are tested against it.
//!
//! For a new connection from S to D (replies of a passed connection always pass):
//! 1. blocked if a deny rule of S's egress or of D's ingress matches (deny wins);
//! 2. blocked if S is egress-isolated (a policy selecting S has an allow-egress rule) and no
//!    allow-egress rule of S matches; likewise for D's ingress;
//! 3. allowed if an allow-ingress rule of D matches (the destination's consent opens the path
//!    even between networks that are not linked);
//! 4. otherwise today's rules: same network passes, another network only if linked, outside
//!    the cluster unless the network is internal; nothing from outside opens a connection in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::model::{Action, Direction, Endpoint, Link, Network, Peer, Policy, Proto, Rule};

/// The transport of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6 echo.
    Icmp,
}

/// What a connection is, besides its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    /// Its transport.
    pub proto: FlowProto,
    /// Destination port (ignored for ICMP).
    pub port: u16,
}

/// The oracle's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The connection opens.
    Allow,
    /// Its first packet is dropped.
    Deny,
}

/// The cluster as the oracle reads it, indexed for lookups.
#[derive(Debug, Clone)]
pub struct PolicyView<'a> {
    networks: BTreeMap<&'a str, &'a Network>,
    by_addr: HashMap<IpAddr, &'a Endpoint>,
    links: BTreeSet<(&'a str, &'a str)>,
    policies: Vec<Policy>,
}

impl<'a> PolicyView<'a> {
    /// Indexes the cluster; `strict` networks count as a policy allowing ingress from the
    /// network itself (see [`super::effective_policies`]).
    pub fn new(
        networks: impl IntoIterator<Item = &'a Network>,
        endpoints: impl IntoIterator<Item = &'a Endpoint>,
        links: impl IntoIterator<Item = &'a Link>,
        policies: impl IntoIterator<Item = &'a Policy>,
    ) -> PolicyView<'a> {
        let networks: BTreeMap<&str, &Network> =
            networks.into_iter().map(|n| (n.name.as_str(), n)).collect();
        let mut by_addr = HashMap::new();
        for e in endpoints {
            by_addr.insert(IpAddr::V4(e.ipv4), e);
            if let Some(v6) = e.ipv6 {
                by_addr.insert(IpAddr::V6(v6), e);
            }
        }
        let links = links
            .into_iter()
            .flat_map(|l| [(l.a.as_str(), l.b.as_str()), (l.b.as_str(), l.a.as_str())])
            .collect();
        let policies = super::effective_policies(networks.values().copied(), policies);
        PolicyView {
            networks,
            by_addr,
            links,
            policies,
        }
    }

    /// The endpoint holding `addr`.
    pub fn endpoint(&self, addr: IpAddr) -> Option<&'a Endpoint> {
        self.by_addr.get(&addr).copied()
    }

    /// The policies selecting `e`.
    fn selecting<'s>(&'s self, e: Option<&'a Endpoint>) -> impl Iterator<Item = &'s Policy> + 's {
        self.policies
            .iter()
            .filter(move |p| e.is_some_and(|e| super::selects(p, e)))
    }

    /// Does `peer` name `addr`?
    fn peer_matches(&self, peer: &Peer, addr: IpAddr) -> bool {
        match peer {
            Peer::Any => true,
            Peer::Cidr(c) => c.contains(&addr),
            Peer::Network(n) => self
                .networks
                .get(n.as_str())
                .is_some_and(|n| in_network(n, addr)),
            Peer::Service(s) => self
                .endpoint(addr)
                .is_some_and(|e| e.service.as_deref() == Some(s)),
            Peer::Container(c) => self.endpoint(addr).is_some_and(|e| &e.name == c),
        }
    }

    /// Does `rule` match a connection whose other end is `other`?
    fn rule_matches(&self, rule: &Rule, other: IpAddr, flow: Flow) -> bool {
        self.peer_matches(&rule.peer, other) && proto_matches(rule, flow)
    }

    /// Is `addr` in a network's subnets without being an endpoint (a gateway, a free address)?
    fn inside_cluster(&self, addr: IpAddr) -> bool {
        self.networks.values().any(|n| in_network(n, addr))
    }
}

/// Is `addr` in one of `n`'s subnets?
fn in_network(n: &Network, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => n.subnet.contains(&a),
        IpAddr::V6(a) => n.subnet6.is_some_and(|s| s.contains(&a)),
    }
}

/// Do `rule`'s protocol and ports admit `flow`?
fn proto_matches(rule: &Rule, flow: Flow) -> bool {
    let proto = match (rule.proto, flow.proto) {
        (Proto::Any, p) => rule.ports.is_empty() || p != FlowProto::Icmp,
        (Proto::Tcp, FlowProto::Tcp) | (Proto::Udp, FlowProto::Udp) => true,
        (Proto::Icmp, FlowProto::Icmp) => true,
        _ => false,
    };
    proto
        && (rule.ports.is_empty()
            || rule
                .ports
                .iter()
                .any(|r| (r.from..=r.to).contains(&flow.port)))
}

/// Whether a new connection from `src` to `dst` passes (both are addresses: of endpoints or
/// of anything outside the cluster).
pub fn verdict(view: &PolicyView<'_>, src: IpAddr, dst: IpAddr, flow: Flow) -> Verdict {
    explain(view, src, dst, flow).verdict
}

/// What decided a verdict: the step of the rules above and, where one did, the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Step 1: a deny rule matched (`rule` counts from 1 in the policy's order).
    DenyRule {
        /// The policy holding the rule.
        policy: String,
        /// Its position in the policy, from 1.
        rule: usize,
        /// Egress (of the source) or ingress (of the destination).
        direction: Direction,
    },
    /// Step 2: these policies isolate the source's egress and none of their allow rules matched.
    EgressIsolated {
        /// The isolating policies, in order.
        policies: Vec<String>,
    },
    /// Step 2: these policies isolate the destination's ingress and none of their allow rules
    /// matched.
    IngressIsolated {
        /// The isolating policies, in order.
        policies: Vec<String>,
    },
    /// Step 3: an allow-ingress rule of the destination matched.
    Consent {
        /// The policy holding the rule.
        policy: String,
        /// Its position in the policy, from 1.
        rule: usize,
    },
    /// Step 4: both ends are on the same network.
    SameNetwork,
    /// Step 4: the two networks are linked.
    Linked,
    /// Step 4: the two networks are not linked.
    NotLinked,
    /// Step 4: the source's network routes out of the cluster.
    Outbound,
    /// Step 4: the source's network is internal, or the destination is a cluster address that
    /// is no endpoint.
    NoRouteOut,
    /// Step 4: nothing outside the cluster opens a connection to an endpoint.
    Inbound,
    /// Step 4: neither end is an endpoint; shibafu does not judge it.
    Unmanaged,
}

/// The oracle's answer with the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the connection opens.
    pub verdict: Verdict,
    /// What decided it.
    pub reason: Reason,
}

/// [`verdict`], and what decided it: the first matching deny rule, the isolating policies,
/// the consenting rule, or which part of today's rules.
pub fn explain(view: &PolicyView<'_>, src: IpAddr, dst: IpAddr, flow: Flow) -> Decision {
    let (s, d) = (view.endpoint(src), view.endpoint(dst));
    let rules = |e, dir, action| {
        view.selecting(e).flat_map(move |p| {
            p.rules
                .iter()
                .enumerate()
                .filter(move |(_, r)| r.direction == dir && r.action == action)
                .map(move |(i, r)| (p.name.as_str(), i + 1, r))
        })
    };
    let matches_dst = |(_, _, r): &(&str, usize, &Rule)| view.rule_matches(r, dst, flow);
    let matches_src = |(_, _, r): &(&str, usize, &Rule)| view.rule_matches(r, src, flow);
    let deny = |reason| Decision {
        verdict: Verdict::Deny,
        reason,
    };
    let owners = |found: Vec<(&str, usize, &Rule)>| {
        let mut names: Vec<String> = Vec::new();
        for (p, _, _) in found {
            if !names.iter().any(|n| n == p) {
                names.push(p.to_string());
            }
        }
        names
    };
    use Action::{Allow, Deny};
    use Direction::{Egress, Ingress};
    let denied = rules(s, Egress, Deny)
        .find(matches_dst)
        .map(|(p, i, _)| (p, i, Egress))
        .or_else(|| {
            rules(d, Ingress, Deny)
                .find(matches_src)
                .map(|(p, i, _)| (p, i, Ingress))
        });
    if let Some((policy, rule, direction)) = denied {
        return deny(Reason::DenyRule {
            policy: policy.to_string(),
            rule,
            direction,
        });
    }
    let egress_allows: Vec<_> = rules(s, Egress, Allow).collect();
    if !egress_allows.is_empty() && !egress_allows.iter().any(matches_dst) {
        return deny(Reason::EgressIsolated {
            policies: owners(egress_allows),
        });
    }
    let ingress_allows: Vec<_> = rules(d, Ingress, Allow).collect();
    if let Some((policy, rule, _)) = ingress_allows.iter().find(|r| matches_src(r)) {
        return Decision {
            verdict: Verdict::Allow,
            reason: Reason::Consent {
                policy: policy.to_string(),
                rule: *rule,
            },
        };
    }
    if !ingress_allows.is_empty() {
        return deny(Reason::IngressIsolated {
            policies: owners(ingress_allows),
        });
    }
    today(view, s, d, dst)
}

/// Rule 4: the reachability networks and links give without policies.
fn today(
    view: &PolicyView<'_>,
    s: Option<&Endpoint>,
    d: Option<&Endpoint>,
    dst: IpAddr,
) -> Decision {
    let decide = |ok: bool, yes: Reason, no: Reason| Decision {
        verdict: if ok { Verdict::Allow } else { Verdict::Deny },
        reason: if ok { yes } else { no },
    };
    match (s, d) {
        (Some(s), Some(d)) if s.network == d.network => {
            decide(true, Reason::SameNetwork, Reason::SameNetwork)
        }
        (Some(s), Some(d)) => decide(
            view.links
                .contains(&(s.network.as_str(), d.network.as_str())),
            Reason::Linked,
            Reason::NotLinked,
        ),
        (Some(s), None) => decide(
            !view.inside_cluster(dst)
                && view
                    .networks
                    .get(s.network.as_str())
                    .is_some_and(|n| !n.internal),
            Reason::Outbound,
            Reason::NoRouteOut,
        ),
        (None, Some(_)) => decide(false, Reason::Inbound, Reason::Inbound),
        (None, None) => decide(true, Reason::Unmanaged, Reason::Unmanaged),
    }
}

#[cfg(test)]
#[path = "oracle_tests.rs"]
mod tests;
