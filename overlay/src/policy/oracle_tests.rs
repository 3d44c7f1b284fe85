use std::net::IpAddr;

use super::*;
use crate::model::{Isolation, MacAddr, SCHEMA_VERSION};

fn net(name: &str, third: u8) -> Network {
    let mut n = Network::new(
        name,
        format!("10.{third}.0.0/24").parse().expect("net"),
        4096 + u32::from(third),
    );
    n.subnet6 = Some(format!("fd00:{third}::/64").parse().expect("net6"));
    n
}

fn ep(name: &str, network: &str, third: u8, host: u8, service: Option<&str>) -> Endpoint {
    Endpoint {
        schema: SCHEMA_VERSION,
        id: name.into(),
        network: network.into(),
        name: name.into(),
        aliases: vec![],
        node: "node1".into(),
        ipv4: format!("10.{third}.0.{host}").parse().expect("v4"),
        ipv6: Some(format!("fd00:{third}::{host}").parse().expect("v6")),
        mac: MacAddr([2, 0, 0, 0, third, host]),
        service: service.map(str::to_string),
        port: None,
        weight: 1,
        health: None,
        cni: None,
        trace: crate::telemetry::Trace::NONE,
    }
}

fn rule(action: Action, dir: Direction, text: &str) -> Rule {
    Rule::parse(action, dir, text).expect("rule")
}

fn policy(name: &str, network: &str, rules: Vec<Rule>) -> Policy {
    Policy::new(name, network, rules)
}

struct World {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    links: Vec<Link>,
    policies: Vec<Policy>,
}

impl World {
    /// frontend (f1, f2), backend (b1, b2 = service api), database (d1 = service db).
    fn new() -> World {
        World {
            networks: vec![net("frontend", 1), net("backend", 2), net("database", 3)],
            endpoints: vec![
                ep("f1", "frontend", 1, 2, None),
                ep("f2", "frontend", 1, 3, None),
                ep("b1", "backend", 2, 2, None),
                ep("b2", "backend", 2, 3, Some("api")),
                ep("d1", "database", 3, 2, Some("db")),
            ],
            links: vec![
                Link::new("frontend", "database"),
                Link::new("backend", "database"),
            ],
            policies: vec![],
        }
    }

    /// The verdict, checked to be what `verdict` itself says.
    fn verdict(&self, src: &str, dst: &str, proto: FlowProto, port: u16) -> Verdict {
        let decision = self.explain(src, dst, proto, port);
        let view = PolicyView::new(&self.networks, &self.endpoints, &self.links, &self.policies);
        let (s, d) = (self.addr(src), self.addr(dst));
        assert_eq!(verdict(&view, s, d, Flow { proto, port }), decision.verdict);
        decision.verdict
    }

    /// A container's address, or an address as written.
    fn addr(&self, n: &str) -> IpAddr {
        self.endpoints
            .iter()
            .find(|e| e.name == n)
            .map(|e| IpAddr::V4(e.ipv4))
            .unwrap_or_else(|| n.parse().expect("address"))
    }

    fn explain(&self, src: &str, dst: &str, proto: FlowProto, port: u16) -> Decision {
        let view = PolicyView::new(&self.networks, &self.endpoints, &self.links, &self.policies);
        explain(&view, self.addr(src), self.addr(dst), Flow { proto, port })
    }
}

use FlowProto::{Icmp, Tcp, Udp};
use Verdict::{Allow, Deny};

#[test]
fn without_policies_networks_and_links_decide() {
    let w = World::new();
    assert_eq!(w.verdict("f1", "f2", Tcp, 80), Allow);
    assert_eq!(w.verdict("f1", "d1", Tcp, 5432), Allow, "linked");
    assert_eq!(w.verdict("f1", "b1", Tcp, 80), Deny, "not linked");
    assert_eq!(
        w.verdict("f1", "192.0.2.1", Udp, 53),
        Allow,
        "outside by NAT"
    );
    assert_eq!(
        w.verdict("192.0.2.1", "f1", Tcp, 80),
        Deny,
        "nothing opens in"
    );
    assert_eq!(
        w.verdict("f1", "10.2.0.99", Tcp, 80),
        Deny,
        "another subnet, no endpoint"
    );
}

#[test]
fn the_seed_example_denies_frontend_and_opens_5432_to_backend() {
    let mut w = World::new();
    w.policies.push(policy(
        "database-isolation",
        "database",
        vec![
            rule(Action::Deny, Direction::Ingress, "frontend"),
            rule(Action::Allow, Direction::Ingress, "backend:5432"),
        ],
    ));
    assert_eq!(
        w.verdict("f1", "d1", Tcp, 5432),
        Deny,
        "deny wins over the link"
    );
    assert_eq!(w.verdict("b1", "d1", Tcp, 5432), Allow);
    assert_eq!(
        w.verdict("b1", "d1", Tcp, 22),
        Deny,
        "isolated: only 5432 allowed"
    );
    assert_eq!(w.verdict("b1", "d1", Udp, 5432), Deny, "ports mean tcp");
    assert_eq!(w.verdict("b1", "d1", Icmp, 0), Deny);
    assert_eq!(
        w.verdict("d1", "b1", Tcp, 80),
        Allow,
        "egress is not isolated"
    );
}

#[test]
fn consent_opens_unlinked_networks_and_deny_wins_over_it() {
    let mut w = World::new();
    w.policies.push(policy(
        "open",
        "backend",
        vec![rule(Action::Allow, Direction::Ingress, "frontend:80")],
    ));
    assert_eq!(w.verdict("f1", "b1", Tcp, 80), Allow);
    assert_eq!(w.verdict("f1", "b1", Tcp, 81), Deny);
    assert_eq!(
        w.verdict("b2", "b1", Tcp, 80),
        Deny,
        "own network needs an explicit allow"
    );
    w.policies.push(policy(
        "no-f2",
        "frontend",
        vec![rule(Action::Deny, Direction::Egress, "container:b1")],
    ));
    assert_eq!(
        w.verdict("f2", "b1", Tcp, 80),
        Deny,
        "egress deny of the source wins"
    );
}

#[test]
fn egress_isolation_and_outside_cidrs() {
    let mut w = World::new();
    w.policies.push(policy(
        "out",
        "frontend",
        vec![rule(Action::Allow, Direction::Egress, "192.0.2.0/24:443")],
    ));
    assert_eq!(w.verdict("f1", "192.0.2.7", Tcp, 443), Allow);
    assert_eq!(w.verdict("f1", "198.51.100.7", Tcp, 443), Deny, "isolated");
    assert_eq!(w.verdict("f1", "f2", Tcp, 80), Deny, "own network too");
    assert_eq!(
        w.verdict("d1", "f1", Tcp, 80),
        Allow,
        "ingress of f1 is open (d1 is linked and not selected)"
    );
    w.networks[0].internal = true;
    assert_eq!(
        w.verdict("f1", "192.0.2.7", Tcp, 443),
        Deny,
        "internal: allow-egress does not open"
    );
}

#[test]
fn service_policies_select_only_instances_and_service_peers_match_anywhere() {
    let mut w = World::new();
    w.policies.push(Policy {
        service: Some("api".into()),
        ..policy(
            "api-only",
            "backend",
            vec![rule(Action::Allow, Direction::Ingress, "service:db/any")],
        )
    });
    assert_eq!(w.verdict("d1", "b2", Udp, 9), Allow, "db instance");
    assert_eq!(w.verdict("b1", "b2", Tcp, 80), Deny, "b2 is isolated");
    assert_eq!(w.verdict("b2", "b1", Tcp, 80), Allow, "b1 is not selected");
    assert_eq!(
        w.verdict("d1", "b1", Tcp, 80),
        Allow,
        "linked, b1 not selected"
    );
}

#[test]
fn strict_networks_take_only_their_own_traffic_and_v6_peers_match() {
    let mut w = World::new();
    w.networks[2].isolation = Isolation::Strict;
    assert_eq!(
        w.verdict("f1", "d1", Tcp, 80),
        Deny,
        "link does not open a strict network"
    );
    let mut d2 = ep("d2", "database", 3, 3, None);
    d2.node = "node2".into();
    w.endpoints.push(d2);
    assert_eq!(w.verdict("d2", "d1", Icmp, 0), Allow);
    w.policies.push(policy(
        "icmp",
        "database",
        vec![rule(Action::Allow, Direction::Ingress, "fd00:1::/64/icmp")],
    ));
    let view = PolicyView::new(&w.networks, &w.endpoints, &w.links, &w.policies);
    let icmp = Flow {
        proto: Icmp,
        port: 0,
    };
    let (f1, d1): (IpAddr, IpAddr) = (
        "fd00:1::2".parse().expect("v6"),
        "fd00:3::2".parse().expect("v6"),
    );
    assert_eq!(verdict(&view, f1, d1, icmp), Allow);
    let (f1v4, d1v4): (IpAddr, IpAddr) = (
        "10.1.0.2".parse().expect("v4"),
        "10.3.0.2".parse().expect("v4"),
    );
    assert_eq!(
        verdict(&view, f1v4, d1v4, icmp),
        Deny,
        "the v6 CIDR does not match v4"
    );
}

#[test]
fn policies_on_unknown_networks_do_nothing_and_policed_networks_are_named() {
    let mut w = World::new();
    w.policies.push(policy(
        "ghost",
        "nowhere",
        vec![rule(Action::Deny, Direction::Ingress, "any")],
    ));
    w.networks[1].isolation = Isolation::Strict;
    w.policies.push(policy(
        "db",
        "database",
        vec![rule(Action::Deny, Direction::Egress, "any")],
    ));
    assert_eq!(w.verdict("f1", "f2", Tcp, 80), Allow);
    let policed = super::super::policed_networks(&w.networks, &w.policies);
    assert_eq!(
        policed.into_iter().collect::<Vec<_>>(),
        ["backend", "database"]
    );
    assert_eq!(w.verdict("d1", "f1", Tcp, 80), Deny, "deny egress any");
}

#[test]
fn explain_names_the_deciding_policy_and_rule() {
    let mut w = World::new();
    let reason = |w: &World, s, d, p, port| w.explain(s, d, p, port).reason;
    assert_eq!(reason(&w, "f1", "f2", Tcp, 80), Reason::SameNetwork);
    assert_eq!(reason(&w, "f1", "d1", Tcp, 5432), Reason::Linked);
    assert_eq!(reason(&w, "f1", "b1", Tcp, 80), Reason::NotLinked);
    assert_eq!(reason(&w, "f1", "192.0.2.1", Udp, 53), Reason::Outbound);
    assert_eq!(reason(&w, "f1", "10.2.0.99", Tcp, 80), Reason::NoRouteOut);
    assert_eq!(reason(&w, "192.0.2.1", "f1", Tcp, 80), Reason::Inbound);
    w.policies.push(policy(
        "database-isolation",
        "database",
        vec![
            rule(Action::Deny, Direction::Ingress, "frontend"),
            rule(Action::Allow, Direction::Ingress, "backend:5432"),
        ],
    ));
    w.policies.push(policy(
        "frontend-out",
        "frontend",
        vec![rule(Action::Allow, Direction::Egress, "database")],
    ));
    let d = w.explain("f1", "d1", Tcp, 5432);
    assert_eq!(d.verdict, Deny);
    assert_eq!(
        d.reason,
        Reason::DenyRule {
            policy: "database-isolation".into(),
            rule: 1,
            direction: Direction::Ingress
        }
    );
    assert_eq!(
        w.explain("b1", "d1", Tcp, 5432),
        Decision {
            verdict: Allow,
            reason: Reason::Consent {
                policy: "database-isolation".into(),
                rule: 2
            }
        }
    );
    assert_eq!(
        reason(&w, "b1", "d1", Tcp, 22),
        Reason::IngressIsolated {
            policies: vec!["database-isolation".into()]
        }
    );
    assert_eq!(
        reason(&w, "f1", "f2", Tcp, 80),
        Reason::EgressIsolated {
            policies: vec!["frontend-out".into()]
        }
    );
}

#[test]
fn explain_agrees_with_verdict_everywhere_in_the_world() {
    let mut w = World::new();
    w.policies.push(policy(
        "database-isolation",
        "database",
        vec![
            rule(Action::Deny, Direction::Ingress, "frontend"),
            rule(Action::Allow, Direction::Ingress, "backend:5432"),
        ],
    ));
    let names = ["f1", "f2", "b1", "b2", "d1", "192.0.2.1"];
    for s in names {
        for d in names {
            for (proto, port) in [(Tcp, 5432), (Udp, 53), (Icmp, 0)] {
                assert_eq!(
                    w.explain(s, d, proto, port).verdict,
                    w.verdict(s, d, proto, port)
                );
            }
        }
    }
}
