//! The rule syntax of the command line.

use super::*;

fn allow_in(text: &str) -> Result<Rule, PolicyError> {
    Rule::parse(Action::Allow, Direction::Ingress, text)
}

#[test]
fn peers_ports_and_protocols_are_read_as_the_issue_writes_them() {
    let r = allow_in("backend:5432").expect("rule");
    assert_eq!(r.peer, Peer::Network("backend".into()));
    assert_eq!(
        r.ports,
        [PortRange {
            from: 5432,
            to: 5432
        }]
    );
    assert_eq!(r.proto, Proto::Tcp, "tcp by default with ports");
    assert_eq!(
        allow_in("frontend").expect("rule").proto,
        Proto::Any,
        "any without ports"
    );
    let r = allow_in("10.0.0.0/8:80,443/udp").expect("rule");
    assert_eq!(r.peer, Peer::Cidr("10.0.0.0/8".parse().expect("net")));
    assert_eq!(r.ports.len(), 2);
    assert_eq!(r.proto, Proto::Udp);
    let r = allow_in("fd00:1::/64:8000-8100").expect("rule");
    assert_eq!(r.peer, Peer::Cidr("fd00:1::/64".parse().expect("net")));
    assert_eq!(
        r.ports,
        [PortRange {
            from: 8000,
            to: 8100
        }]
    );
    assert_eq!(
        allow_in("service:web:80").expect("rule").peer,
        Peer::Service("web".into())
    );
    assert_eq!(
        allow_in("container:api").expect("rule").peer,
        Peer::Container("api".into())
    );
    assert_eq!(allow_in("any/icmp").expect("rule").proto, Proto::Icmp);
    assert_eq!(allow_in("any").expect("rule").peer, Peer::Any);
    assert_eq!(
        allow_in("backend:5432").expect("rule").to_string(),
        "--allow-ingress-from backend:5432/tcp"
    );
}

#[test]
fn bad_rules_say_what_is_wrong() {
    for (text, says) in [
        ("backend:0", "port 0"),
        ("backend:100-80", "upside down"),
        ("any:53/icmp", "icmp has no ports"),
        ("backend:http", "not a port"),
        ("10.0.0.5/8", "host bits"),
        ("10.0.0.0/33", "not a CIDR"),
        ("pod:web:80", "not a peer kind"),
        ("a:b:c", "unknown peer kind"),
        ("Backend", "invalid peer name"),
        ("", "no peer"),
    ] {
        let e = allow_in(text).expect_err(text).to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
    let p = Policy::new("x", "database", vec![]);
    assert_eq!(p.validate(), Err(PolicyError::NoRules("x".into())));
}
