//! The compiled tables against the oracle: the seed example and its counters, outside sources,
//! random small clusters (2-3 networks and nodes, policies of every kind) in which every
//! connection between endpoints and outside addresses must pass exactly when the oracle says so,
//! and a check that this comparison notices tables broken on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::{Mutation, World};
use crate::model::{
    Action, Direction, Endpoint, Isolation, Link, Network, Peer, Policy, PortRange, Proto, Rule,
};
use crate::policy::{compile, verdict, Flow, FlowProto, PolicyView, Table, Verdict};

fn network(name: &str, i: u8, v6: bool) -> Network {
    let mut n = Network::new(
        name,
        Ipv4Net::new(Ipv4Addr::new(10, i, 0, 0), 24).expect("v4"),
        4096 + u32::from(i),
    );
    n.subnet6 = v6.then(|| Ipv6Net::new(v6_addr(i, 0), 64).expect("v6"));
    n
}

fn v6_addr(net: u8, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, net.into(), 0, 0, 0, 0, 0, host.into())
}

/// Endpoint `name` at host `host` of network `net` (number `i`), on `node`.
fn endpoint(name: &str, net: &Network, i: u8, host: u8, node: &str) -> Endpoint {
    let mut e = Endpoint::new(&net.name, name, node, Ipv4Addr::new(10, i, 0, host));
    e.ipv6 = net.subnet6.map(|_| v6_addr(i, host));
    e
}

const TCP: FlowProto = FlowProto::Tcp;

fn tcp(port: u16) -> Flow {
    Flow { proto: TCP, port }
}

/// frontend (f1 on node1, f2 on node2), backend (b1 on node1, b2 on node2), database (d1 on
/// node2); frontend and backend are linked to database; the seed policy on database.
fn seed() -> World {
    let networks = vec![
        network("frontend", 1, true),
        network("backend", 2, true),
        network("database", 3, true),
    ];
    let at = |name, i: usize, host, node| endpoint(name, &networks[i], i as u8 + 1, host, node);
    let endpoints = vec![
        at("f1", 0, 2, "node1"),
        at("f2", 0, 3, "node2"),
        at("b1", 1, 2, "node1"),
        at("b2", 1, 3, "node2"),
        at("d1", 2, 2, "node2"),
    ];
    let rule = |a, text| Rule::parse(a, Direction::Ingress, text).expect("rule");
    let policy = Policy::new(
        "database-isolation",
        "database",
        vec![
            rule(Action::Deny, "frontend"),
            rule(Action::Allow, "backend:5432"),
        ],
    );
    World {
        networks,
        endpoints,
        links: vec![
            Link::new("frontend", "database"),
            Link::new("backend", "database"),
        ],
        policies: vec![policy],
        nodes: vec!["node1".into(), "node2".into()],
    }
}

fn addr(w: &World, name: &str, v6: bool) -> IpAddr {
    let e = w
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .expect("endpoint");
    match (v6, e.ipv6) {
        (true, Some(a)) => IpAddr::V6(a),
        _ => IpAddr::V4(e.ipv4),
    }
}

#[test]
fn the_seed_example_denies_frontend_and_opens_5432_to_backend() {
    let w = seed();
    let tables = w.tables();
    let view = PolicyView::new(&w.networks, &w.endpoints, &w.links, &w.policies);
    let cases = [
        ("f1", "d1", tcp(5432), Verdict::Deny),
        ("f2", "d1", tcp(5432), Verdict::Deny),
        ("b1", "d1", tcp(5432), Verdict::Allow),
        ("b2", "d1", tcp(5432), Verdict::Allow),
        ("b1", "d1", tcp(22), Verdict::Deny),
        (
            "b1",
            "d1",
            Flow {
                proto: FlowProto::Udp,
                port: 5432,
            },
            Verdict::Deny,
        ),
        ("d1", "b1", tcp(80), Verdict::Allow),
        ("f1", "b1", tcp(80), Verdict::Deny),
        ("f1", "f2", tcp(80), Verdict::Allow),
    ];
    for v6 in [false, true] {
        for (s, d, flow, want) in cases {
            let (src, dst) = (addr(&w, s, v6), addr(&w, d, v6));
            let path = w.send(&tables, src, dst, flow, "node1");
            assert_eq!(path.verdict, want, "{s} -> {d} {flow:?}\n{path}");
            assert_eq!(
                verdict(&view, src, dst, flow),
                want,
                "oracle: {s} -> {d} {flow:?}"
            );
        }
    }
}

#[test]
fn a_probe_moves_the_counter_of_the_rule_that_decided_once() {
    let w = seed();
    let tables = w.tables();
    let names = {
        let nets: Vec<&Network> = w.networks.iter().collect();
        let eps: Vec<&Endpoint> = w.endpoints.iter().collect();
        let pols: Vec<&Policy> = w.policies.iter().collect();
        compile(&nets, &eps, &pols, "node1").counters.remove(0)
    };
    let (deny, allow, iso) = (&names.rules[0], &names.rules[1], &names.isolation);
    let send = |s, d, flow| {
        w.send(
            &tables,
            addr(&w, s, false),
            addr(&w, d, false),
            flow,
            "node1",
        )
    };

    let denied = send("f1", "d1", tcp(5432));
    assert_eq!(denied.verdict, Verdict::Deny);
    assert_eq!(
        denied.counted(),
        [format!("node2:{deny}=1")],
        "on d1's node only\n{denied}"
    );

    let allowed = send("b1", "d1", tcp(5432));
    assert_eq!(allowed.verdict, Verdict::Allow);
    assert_eq!(allowed.count("node2", allow), 1);
    assert_eq!(
        allowed.counted(),
        [format!("node2:{allow}=1")],
        "once across nodes\n{allowed}"
    );

    let local = send("b2", "d1", tcp(5432));
    assert_eq!(
        local.counted(),
        [format!("node2:{allow}=1")],
        "same node\n{local}"
    );

    let isolated = send("b1", "d1", tcp(22));
    assert_eq!(isolated.counted(), [format!("node2:{iso}=1")], "{isolated}");
}

#[test]
fn outside_sources_get_in_only_by_consent_whichever_node_they_enter() {
    let mut w = seed();
    w.networks[2].internal = true;
    w.policies.push(Policy::new(
        "from-doc",
        "database",
        vec![Rule::parse(Action::Allow, Direction::Ingress, "192.0.2.0/24:443").expect("rule")],
    ));
    let outside = [
        "192.0.2.7".parse().expect("v4"),
        "198.51.100.9".parse().expect("v4"),
    ];
    let flows = [tcp(443), tcp(5432)];
    assert_eq!(
        w.disagreement(&w.addresses(&outside), &flows, &|_| {}),
        None
    );
    let tables = w.tables();
    for entry in ["node1", "node2"] {
        let p = w.send(&tables, outside[0], addr(&w, "d1", false), tcp(443), entry);
        assert_eq!(p.verdict, Verdict::Allow, "{p}");
    }
}

// Random clusters.

const PORTS: [(u16, u16); 6] = [
    (53, 53),
    (80, 80),
    (443, 443),
    (5432, 5432),
    (8000, 8100),
    (1, 1024),
];
const FLOW_PORTS: [u16; 10] = [53, 80, 443, 5432, 8000, 8100, 8101, 22, 1024, 1025];

/// Host part of endpoint number `k` (spread so /25 and /32 peers split them).
fn host(k: usize) -> u8 {
    2 + 31 * k as u8
}

fn peer() -> impl Strategy<Value = Peer> {
    let cidrs: Vec<IpNet> = [
        "10.0.0.0/8",
        "10.1.0.0/24",
        "10.0.0.0/25",
        "10.2.0.128/25",
        "10.1.0.33/32",
        "192.0.2.0/24",
        "0.0.0.0/0",
        "fd00::/8",
        "fd00:1::/64",
        "fd00::/121",
        "fd00:2::21/128",
        "2001:db8::/32",
        "::/0",
    ]
    .iter()
    .map(|c| c.parse().expect("cidr"))
    .collect();
    prop_oneof![
        3 => (0..4u8).prop_map(|i| Peer::Network(format!("n{i}"))),
        3 => prop::sample::select(cidrs).prop_map(Peer::Cidr),
        1 => prop::sample::select(vec!["web", "db", "ghost"]).prop_map(|s| Peer::Service(s.into())),
        1 => (0..5u8).prop_map(|i| Peer::Container(format!("c{i}"))),
        1 => Just(Peer::Any),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let ports = prop_oneof![
        Just(vec![]),
        prop::collection::vec(prop::sample::select(PORTS.to_vec()), 1..=2)
    ];
    let proto = prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Any]);
    (any::<bool>(), any::<bool>(), peer(), ports, proto).prop_map(
        |(allow, ingress, peer, ports, proto)| {
            let ports = if proto == Proto::Icmp { vec![] } else { ports };
            Rule {
                action: if allow { Action::Allow } else { Action::Deny },
                direction: if ingress {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                peer,
                ports: ports
                    .into_iter()
                    .map(|(from, to)| PortRange { from, to })
                    .collect(),
                proto,
            }
        },
    )
}

/// A network: IPv6 subnet, internal, strict.
type NetSpec = (bool, bool, bool);
/// An endpoint: network, node, name, service (0 none, 1 web, 2 db), IPv6 address.
type EndpointSpec = (usize, usize, u8, usize, bool);
/// A policy: network (3 is unknown), service (0 none, 1 web, 2 db, 3 ghost), rules.
type PolicySpec = (u8, usize, Vec<Rule>);

fn world() -> impl Strategy<Value = World> {
    let net = (
        prop::bool::weighted(0.6),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.25),
    );
    let ep = (
        0..3usize,
        0..3usize,
        0..5u8,
        0..3usize,
        prop::bool::weighted(0.8),
    );
    let pol = (
        0..4u8,
        prop_oneof![3 => Just(0usize), 1 => 1..4usize],
        prop::collection::vec(rule(), 1..=3),
    );
    (
        prop::collection::vec(net, 2..=3),
        prop::collection::vec(any::<bool>(), 3),
        2..=3usize,
        prop::collection::vec(ep, 3..=8),
        prop::collection::vec(pol, 0..=4),
    )
        .prop_map(|(nets, links, nodes, eps, pols)| build(&nets, &links, nodes, &eps, &pols))
}

fn build(
    nets: &[NetSpec],
    links: &[bool],
    nodes: usize,
    eps: &[EndpointSpec],
    pols: &[PolicySpec],
) -> World {
    let networks: Vec<Network> = nets
        .iter()
        .enumerate()
        .map(|(i, &(v6, internal, strict))| {
            let mut n = network(&format!("n{i}"), i as u8, v6);
            n.internal = internal;
            n.isolation = if strict {
                Isolation::Strict
            } else {
                Isolation::None
            };
            n
        })
        .collect();
    let pairs = [(0, 1), (0, 2), (1, 2)];
    let links = pairs
        .iter()
        .zip(links)
        .filter(|((_, b), on)| **on && *b < networks.len())
        .map(|((a, b), _)| Link::new(&networks[*a].name, &networks[*b].name))
        .collect();
    let nodes: Vec<String> = (1..=nodes).map(|i| format!("node{i}")).collect();
    let services = [None, Some("web"), Some("db"), Some("ghost")];
    let endpoints = eps
        .iter()
        .enumerate()
        .map(|(k, &(net, node, name, service, v6))| {
            let i = net % networks.len();
            let mut e = endpoint(
                &format!("c{name}"),
                &networks[i],
                i as u8,
                host(k),
                &nodes[node % nodes.len()],
            );
            e.id = format!("e{k}");
            e.ipv6 = e.ipv6.filter(|_| v6);
            e.service = services[service].map(str::to_string);
            e
        })
        .collect();
    let policies = pols
        .iter()
        .enumerate()
        .map(|(i, (net, service, rules))| {
            let mut p = Policy::new(&format!("pol-{i}"), &format!("n{net}"), rules.clone());
            p.service = services[*service].map(str::to_string);
            p.validate().expect("valid policy");
            p
        })
        .collect();
    World {
        networks,
        endpoints,
        links,
        policies,
        nodes,
    }
}

fn flow() -> impl Strategy<Value = Flow> {
    let proto = prop::sample::select(vec![FlowProto::Tcp, FlowProto::Udp, FlowProto::Icmp]);
    (proto, prop::sample::select(FLOW_PORTS.to_vec()))
        .prop_map(|(proto, port)| Flow { proto, port })
}

/// Addresses outside every network: two per family.
fn outside() -> Vec<IpAddr> {
    ["192.0.2.7", "198.51.100.9", "2001:db8::7", "2002::9"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect()
}

fn flows() -> impl Strategy<Value = Vec<Flow>> {
    prop::collection::vec(flow(), 1..=3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn the_compiled_tables_decide_every_connection_as_the_oracle(w in world(), flows in flows()) {
        if let Some(why) = w.disagreement(&w.addresses(&outside()), &flows, &|_| {}) {
            prop_assert!(false, "{}", why);
        }
    }
}

/// Random clusters per run of the property above.
const CASES: u32 = 1024;

/// Does the comparison notice `mutate` within `tries` random clusters (a disagreement, or a
/// panic of the interpreter)?
fn caught(mutate: Mutation, tries: usize) -> bool {
    let mut runner = TestRunner::deterministic();
    (0..tries).any(|_| {
        let (w, flows) = (world(), flows())
            .new_tree(&mut runner)
            .expect("value")
            .current();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.disagreement(&w.addresses(&outside()), &flows, mutate)
        }));
        !matches!(run, Ok(None))
    })
}

fn rewrite(t: &mut Table, chain: &str, f: impl Fn(&mut Vec<String>)) {
    if let Some(c) = t.chains.get_mut(chain) {
        f(&mut c.rules);
    }
}

#[test]
fn the_comparison_notices_broken_tables() {
    let mutants: [(&str, Mutation); 7] = [
        ("no consent for remote destinations", &|t| {
            rewrite(t, "sf_consent", |r| r.clear())
        }),
        ("ingress allows do not consent", &|t| {
            rewrite(t, "sf_ingress", |r| {
                r.pop();
            })
        }),
        ("isolation inverted", &|t| {
            for c in t.chains.values_mut() {
                for r in &mut c.rules {
                    *r = r.replace("== 0 counter", "!= 0 counter");
                }
            }
        }),
        ("no egress isolation", &|t| {
            rewrite(t, "sf_egress", |r| r.retain(|x| !x.contains("== 0")))
        }),
        ("egress dispatched by destination", &|t| {
            rewrite(t, "sf_egress", |r| {
                r.iter_mut().for_each(|x| *x = x.replace("saddr", "daddr"))
            })
        }),
        ("v4 icmp spelled as v6", &|t| {
            for c in t.chains.values_mut() {
                for r in &mut c.rules {
                    *r = r.replace("l4proto icmp", "l4proto ipv6-icmp");
                }
            }
        }),
        ("isolation drops counted on the first rule", &|t| {
            for c in t.chains.values_mut() {
                for r in &mut c.rules {
                    *r = r.replace("_iso\"", "_r0\"");
                }
            }
        }),
    ];
    for (name, mutate) in mutants {
        assert!(caught(mutate, 256), "{name}: not noticed");
    }
}
