//! Which networks a host builds. A network costs every host that builds it a bridge, a VXLAN
//! device and an FDB and a neighbour entry per remote endpoint, and every change of its
//! endpoints a dataplane pass there; so a host builds only what its containers can reach
//! through it.

use std::collections::BTreeSet;

use super::desired::LocalContainer;
use crate::model::{Action, Direction, Endpoint, Link, Network, Peer, Policy};

/// The networks this host builds: those its containers are on; the networks linked to those
/// (traffic to a linked network is routed on the sending node, onto that network's bridge);
/// every network with a policy letting in peers from outside it (a destination's consent opens a
/// path even from networks not linked to it, routed the same way); and, for such a policy on a
/// network used here, the networks its peers may be on (the replies are routed here).
pub fn networks_in_use<'a>(
    containers: &[LocalContainer],
    links: impl IntoIterator<Item = &'a Link>,
    policies: impl IntoIterator<Item = &'a Policy>,
    networks: &[Network],
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> BTreeSet<String> {
    let local: BTreeSet<&str> = containers
        .iter()
        .flat_map(|c| c.interfaces.iter().map(|i| i.network.as_str()))
        .collect();
    networks_in_use_by(&local, links, policies, networks, endpoints)
}

/// [`networks_in_use`] given the names of the networks this host's containers are on.
pub fn networks_in_use_by<'a>(
    local: &BTreeSet<&str>,
    links: impl IntoIterator<Item = &'a Link>,
    policies: impl IntoIterator<Item = &'a Policy>,
    networks: &[Network],
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = local.iter().map(|n| n.to_string()).collect();
    for l in links {
        if local.contains(l.a.as_str()) {
            out.insert(l.b.clone());
        }
        if local.contains(l.b.as_str()) {
            out.insert(l.a.clone());
        }
    }
    let mut named = Vec::new();
    for p in policies {
        let consents = p.rules.iter().filter(|r| {
            r.action == Action::Allow
                && r.direction == Direction::Ingress
                && r.peer != Peer::Network(p.network.clone())
        });
        for r in consents {
            out.insert(p.network.clone());
            if local.contains(p.network.as_str()) {
                match &r.peer {
                    Peer::Network(n) => {
                        out.insert(n.clone());
                    }
                    Peer::Any => out.extend(networks.iter().map(|n| n.name.clone())),
                    Peer::Cidr(c) => out.extend(
                        networks
                            .iter()
                            .filter(|n| overlaps(n, c))
                            .map(|n| n.name.clone()),
                    ),
                    peer => named.push(peer),
                }
            }
        }
    }
    if !named.is_empty() {
        let on = |e: &Endpoint, peer: &Peer| match peer {
            Peer::Service(s) => e.service.as_ref() == Some(s),
            Peer::Container(c) => &e.name == c,
            _ => false,
        };
        for e in endpoints {
            if named.iter().any(|p| on(e, p)) {
                out.insert(e.network.clone());
            }
        }
    }
    out
}

/// Can the networks in use depend on the endpoints (a policy letting in peers named by service or
/// container name, which may be on any network)? When not, an endpoint coming or going changes
/// only its own network's plan.
pub fn in_use_reads_endpoints<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> bool {
    policies.into_iter().any(|p| {
        p.rules.iter().any(|r| {
            r.action == Action::Allow
                && r.direction == Direction::Ingress
                && matches!(r.peer, Peer::Service(_) | Peer::Container(_))
        })
    })
}

/// Do the subnets of `n` share an address with `c`?
fn overlaps(n: &Network, c: &ipnet::IpNet) -> bool {
    let v4 = ipnet::IpNet::V4(n.subnet);
    let v6 = n.subnet6.map(ipnet::IpNet::V6);
    [Some(v4), v6]
        .into_iter()
        .flatten()
        .any(|s| s.contains(c) || c.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PortRange, Proto, Rule};
    use crate::plan::LocalInterface;
    use std::path::PathBuf;

    fn on(networks: &[&str]) -> LocalContainer {
        LocalContainer {
            netns: PathBuf::from("/run/netns/c"),
            interfaces: networks
                .iter()
                .map(|n| LocalInterface {
                    network: n.to_string(),
                    endpoint_id: format!("e-{n}"),
                    ifname: "eth0".into(),
                })
                .collect(),
        }
    }

    fn ingress(action: Action, peer: Peer) -> Rule {
        Rule {
            action,
            direction: Direction::Ingress,
            peer,
            ports: vec![PortRange {
                from: 5432,
                to: 5432,
            }],
            proto: Proto::Tcp,
        }
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_host_without_containers_builds_nothing() {
        let links = [Link::new("a", "b")];
        assert!(networks_in_use(&[], &links, &[], &[], &[]).is_empty());
    }

    #[test]
    fn containers_networks_and_their_links_are_built_not_links_of_links() {
        let links = [
            Link::new("a", "b"),
            Link::new("c", "b"),
            Link::new("d", "e"),
        ];
        let used = networks_in_use(&[on(&["b"]), on(&["x"])], &links, &[], &[], &[]);
        assert_eq!(names(&used), ["a", "b", "c", "x"]);
        let used = networks_in_use(&[on(&["a"])], &links, &[], &[], &[]);
        assert_eq!(names(&used), ["a", "b"]);
    }

    #[test]
    fn a_network_consenting_to_other_peers_is_built_everywhere() {
        let mut consent = Policy::new("p", "db", vec![ingress(Action::Allow, Peer::Any)]);
        let used = networks_in_use(&[on(&["web"])], &[], [&consent], &[], &[]);
        assert_eq!(names(&used), ["db", "web"]);
        consent.rules = vec![ingress(Action::Allow, Peer::Network("web".into()))];
        assert_eq!(
            names(&networks_in_use(&[], &[], [&consent], &[], &[])),
            ["db"]
        );
    }

    #[test]
    fn denials_egress_and_a_network_admitting_only_itself_open_nothing() {
        let deny = Policy::new("d", "db", vec![ingress(Action::Deny, Peer::Any)]);
        let own = Policy::new(
            "o",
            "db",
            vec![ingress(Action::Allow, Peer::Network("db".into()))],
        );
        let mut egress = ingress(Action::Allow, Peer::Any);
        egress.direction = Direction::Egress;
        let out = Policy::new("e", "db", vec![egress]);
        assert!(networks_in_use(&[], &[], [&deny, &own, &out], &[], &[]).is_empty());
    }

    #[test]
    fn where_a_consenting_network_is_used_its_peers_networks_are_built_for_the_replies() {
        let net = |name: &str, subnet: &str| Network::new(name, subnet.parse().expect("net"), 1);
        let networks = [
            net("db", "10.1.0.0/24"),
            net("web", "10.2.0.0/24"),
            net("ops", "10.3.0.0/24"),
        ];
        let mut web1 = Endpoint::new("web", "web1", "node2", "10.2.0.2".parse().expect("ip"));
        web1.service = Some("front".into());
        let ops1 = Endpoint::new("ops", "ops1", "node3", "10.3.0.2".parse().expect("ip"));
        let eps = [web1, ops1];
        let used = |peer: Peer| {
            let p = Policy::new("p", "db", vec![ingress(Action::Allow, peer)]);
            let used = networks_in_use(&[on(&["db"])], &[], [&p], &networks, &eps);
            names(&used).join(",")
        };
        assert_eq!(used(Peer::Network("web".into())), "db,web");
        assert_eq!(
            used(Peer::Cidr("10.3.0.128/25".parse().expect("cidr"))),
            "db,ops"
        );
        assert_eq!(
            used(Peer::Cidr("10.0.0.0/8".parse().expect("cidr"))),
            "db,ops,web"
        );
        assert_eq!(used(Peer::Service("front".into())), "db,web");
        assert_eq!(used(Peer::Container("ops1".into())), "db,ops");
        assert_eq!(used(Peer::Any), "db,ops,web");
        // Where db is not used, only db itself is (for the way there).
        let p = Policy::new("p", "db", vec![ingress(Action::Allow, Peer::Any)]);
        let used = networks_in_use(&[on(&["web"])], &[], [&p], &networks, &eps);
        assert_eq!(names(&used), ["db", "web"]);
    }
}
