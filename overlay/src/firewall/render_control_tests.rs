//! The control-plane guard in the rendered ruleset.

use std::net::IpAddr;

use super::*;
use crate::firewall::ControlPlane;
use crate::model::Network;

fn spec(control: ControlPlane) -> FirewallSpec {
    let net = Network::new("web", "172.21.0.0/24".parse().expect("subnet"), 4096);
    FirewallSpec {
        control,
        ..FirewallSpec::from_model(&[net], &[], None).expect("spec")
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn containers_are_kept_off_control_hosts_and_ports() {
    let control = ControlPlane::new(
        [
            ip("10.9.0.2"),
            ip("10.9.0.11"),
            ip("fd00::2"),
            ip("10.9.0.2"),
        ],
        [7480, 2379, 9480, 2379, 0],
    );
    assert_eq!(control.ports, [2379, 7480, 9480], "sorted, once, no port 0");
    let s = render_ruleset(&spec(control));
    assert!(
        s.contains("set control4 {\n\t\ttype ipv4_addr\n\t\telements = { 10.9.0.2, 10.9.0.11 }")
    );
    assert!(s.contains("set control6 {\n\t\ttype ipv6_addr\n\t\telements = { fd00::2 }"));
    assert!(s.contains("elements = { 2379, 7480, 9480 }"));
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("missing {needle}:\n{s}"))
    };
    let guard = pos("ip daddr @control4 tcp dport @control_ports drop");
    assert!(
        pos("meta mark and 0x08000000 != 0 accept") < guard,
        "an endpoint's consent still comes first (it never names a control host)"
    );
    assert!(
        guard < pos("iifname . oifname @allowed accept"),
        "before anything else accepts"
    );
    assert!(pos("ip6 daddr @control6 tcp dport @control_ports drop") > 0);
    assert!(
        s.contains("iifname @bridges ct state new ip daddr @control4"),
        "only new connections: replies to the node's own are not dropped"
    );
    let listed =
        super::super::conditional_comments(&spec(ControlPlane::new([ip("10.9.0.2")], [2379])));
    assert_eq!(
        listed.len(),
        3,
        "the intactness check looks for the guard too: {listed:?}"
    );
    let input = &s[pos("chain input")..];
    let first = input.lines().nth(3).unwrap_or_default();
    assert!(
        first.contains("iifname @bridges ct state new tcp dport @control_ports drop"),
        "the node's own control ports first after the unbridged ports: {first}"
    );
}

#[test]
fn no_known_port_no_guard() {
    let s = render_ruleset(&spec(ControlPlane::new([ip("10.9.0.2")], [])));
    assert!(!s.contains("@control_ports drop"), "{s}");
    assert!(
        s.contains("set control_ports {\n\t\ttype inet_service\n\t}"),
        "{s}"
    );
}

#[test]
fn service_urls_give_their_address() {
    let a = |u: &str| ControlPlane::url_addr(u).map(|a| a.to_string());
    assert_eq!(a("http://10.9.0.2:2379").as_deref(), Some("10.9.0.2:2379"));
    assert_eq!(
        a("https://[fd00::2]:7480/").as_deref(),
        Some("[fd00::2]:7480")
    );
    assert_eq!(a("10.9.0.3:7480").as_deref(), Some("10.9.0.3:7480"));
    assert_eq!(a("http://etcd.example:2379"), None);
    assert_eq!(a("http://10.9.0.2"), None);
}
