//! Reading files: the phase plan's seed as written, flag-form rules, and every error of a bad
//! file at its line and column.

use shibafu_overlay::model::{Action, Direction, Peer, Policy, PortRange, Proto, Rule};

use super::*;
use crate::yaml::{locate, parse};

/// The phase plan's file, byte for byte.
pub const SEED: &str = r#"# network-config.yaml
networks:
  frontend:
    subnet: "172.21.0.0/24"
    dns:
      zone: "frontend.local"
      forwarders: ["8.8.8.8", "8.8.4.4"]
  backend:
    subnet: "172.22.0.0/24"
    isolation: strict

policies:
  - name: "web-db-isolation"
    rules:
      - deny: {from: "frontend", to: "database"}
      - allow: {from: "backend", to: "database", ports: [5432]}
"#;

fn read_text(text: &str) -> Read {
    read(&parse(text).expect("yaml"))
}

/// Every error as `LINE:COLUMN: message`.
fn errors(text: &str) -> Vec<String> {
    read_text(text)
        .errors
        .iter()
        .map(|e| {
            let at = locate(text, &e.at).map_or("?".into(), |p| p.to_string());
            format!("{at}: {}", e.message)
        })
        .collect()
}

fn rule(action: Action, direction: Direction, text: &str) -> Rule {
    Rule::parse(action, direction, text).expect("rule")
}

#[test]
fn the_seed_reads_as_written() {
    let read = read_text(SEED);
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let doc = read.document;
    let frontend = CreateNetwork {
        name: "frontend".into(),
        subnet: "172.21.0.0/24".into(),
        zone: Some("frontend.local".into()),
        forwarders: vec!["8.8.8.8".into(), "8.8.4.4".into()],
        ..CreateNetwork::default()
    };
    let backend = CreateNetwork {
        name: "backend".into(),
        subnet: "172.22.0.0/24".into(),
        isolation: Isolation::Strict,
        ..CreateNetwork::default()
    };
    assert_eq!(doc.networks, [frontend, backend]);
    let policy = Policy::new(
        "web-db-isolation",
        "database",
        vec![
            rule(Action::Deny, Direction::Ingress, "frontend"),
            rule(Action::Allow, Direction::Ingress, "backend:5432"),
        ],
    );
    assert_eq!(doc.policies, [policy]);
    assert_eq!(doc.policies[0].rules[1].proto, Proto::Tcp, "tcp with ports");
    assert_eq!(doc.policies[0].rules[0].proto, Proto::Any, "any without");
    assert!(doc.links.is_empty() && doc.services.is_empty());
    let place = |path: &str| {
        let loc = read.origins.of(path).expect(path);
        locate(SEED, loc).expect("position").to_string()
    };
    assert_eq!(place("networks/1/isolation"), "10:16");
    assert_eq!(place("networks/0/forwarders/1"), "7:31");
    assert_eq!(
        place("policies/0/network"),
        "15:38",
        "taken from the first rule"
    );
    assert_eq!(place("policies/0/rules/1/peer"), "16:23");
    assert_eq!(
        place("policies/0/rules/1/ports"),
        "16:9",
        "the rule, for want of more"
    );
    assert_eq!(place("networks/0/name"), "3:3");
}

#[test]
fn flag_form_rules_services_and_links() {
    let text = r#"
links:
  - [frontend, backend]
services:
  - name: api
    network: backend
    lb: least-connections
    port: 8080
    port-name: api
    protocol: tcp
    all-unhealthy: fail-open
    health: {http: 8080/healthz, interval: 2s, timeout: 500ms, rise: 3, fall: 2, start-period: 1m}
  - {name: jobs, network: backend, health: {cmd: [test, -f, /ready file]}}
policies:
  - name: api-in
    network: backend
    service: api
    rules:
      - allow-ingress-from: "frontend:8080,8443/tcp"
      - deny-egress-to: "10.0.0.0/8"
      - allow: {from: backend, to: "service:db", ports: [5432, "6000-6010"], protocol: udp}
"#;
    let read = read_text(text);
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let doc = read.document;
    assert_eq!(
        (doc.links[0].a.as_str(), doc.links[0].b.as_str()),
        ("frontend", "backend")
    );
    let api = &doc.services[0];
    assert_eq!(api.lb, Some(LbPolicy::LeastConnections));
    assert_eq!(
        (api.port, api.port_name.as_deref()),
        (Some(8080), Some("api"))
    );
    assert_eq!(api.all_unhealthy, Some(AllUnhealthy::FailOpen));
    let h = &api.health;
    assert_eq!(
        (
            h.interval_ms,
            h.timeout_ms,
            h.rise,
            h.fall,
            h.start_period_ms
        ),
        (Some(2000), Some(500), Some(3), Some(2), Some(60_000))
    );
    let argv = ["test", "-f", "/ready file"].map(String::from).to_vec();
    assert_eq!(doc.services[1].health.probe, Some(Probe::Cmd { argv }));
    let p = &doc.policies[0];
    assert_eq!(
        (p.network.as_str(), p.service.as_deref()),
        ("backend", Some("api"))
    );
    let shown: Vec<String> = p.rules.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "--allow-ingress-from frontend:8080,8443/tcp",
            "--deny-egress-to 10.0.0.0/8/any",
            "--allow-egress-to service:db:5432,6000-6010/udp",
        ]
    );
    assert_eq!(p.rules[2].peer, Peer::Service("db".into()));
    assert_eq!(
        p.rules[2].ports[1],
        PortRange {
            from: 6000,
            to: 6010
        }
    );
}

#[test]
fn every_error_is_reported_at_its_line_and_column() {
    let text = r#"networks:
  frontend:
    subnet: "172.21.0.0/24"
    subnett: "x"
    mtu: big
  backend:
    isolation: total
links:
  - [frontend]
services:
  - name: web
    network: frontend
    port: 70000
    lb: random
    health: {tcp: 80, http: 80/x, interval: 5}
policies:
  - name: p
    rules:
      - deny: {from: frontend, to: database}
      - allow: {from: backend, to: elsewhere}
  - name: q
    network: backend
    rules:
      - allow: {from: a, to: b}
      - allow: {from: backend, to: c, ports: [0]}
      - allow-ingress-from: "frontend:http"
      - permit: everything
  - network: backend
    rules: [{deny-ingress-from: any}]
"#;
    assert_eq!(
        errors(text),
        [
            r#"4:5: unknown key "subnett" (expected subnet, subnet6, mtu, internal, isolation, encrypted, dns)"#,
            "5:10: expected a whole number",
            r#"6:3: network "backend": missing subnet"#,
            r#"7:16: unknown isolation "total" (none, strict)"#,
            "9:5: a link names two networks: [a, b]",
            r#"14:9: invalid lb "random": use round-robin, weighted, least-connections"#,
            "13:11: port 70000 is out of range: use 1-65535",
            "15:23: give one check: tcp, http or cmd",
            r#"15:45: invalid duration "5": use a number with ms, s or m (500ms, 1s, 2m)"#,
            r#"20:16: this rule does not name the policy's network ("database" or "frontend", as the rules before it do): give the policy its network with network:"#,
            "25:47: port 0 is out of range: use 1-65535",
            r#"26:29: invalid rule "frontend:http": "http" is not a port list (5432, 80,443, 8000-8100), and "frontend" is not a peer kind (service:NAME, container:NAME); write PEER[:PORTS][/PROTO], e.g. backend:5432, 10.0.0.0/8:80,443/tcp, service:web, any"#,
            r#"27:9: unknown key "permit" (expected allow, deny, allow-ingress-from, deny-ingress-from, allow-egress-to, deny-egress-to)"#,
            "27:9: a rule is one of allow: {from, to, ports, protocol}, deny: {...}, or allow-ingress-from, deny-ingress-from, allow-egress-to, deny-egress-to: PEER[:PORTS][/PROTO]",
            r#"24:16: neither from ("a") nor to ("b") is the policy's network "backend""#,
            "28:5: policy: missing name",
        ]
    );
}

#[test]
fn origins_fall_back_to_the_closest_part() {
    let read = read_text(SEED);
    let net = read.origins.of("networks/0").expect("network");
    assert_eq!(read.origins.of("networks/0/mtu"), Some(net));
    assert_eq!(read.origins.of("services/3/name"), None);
}

#[test]
fn duplicates_are_kept_for_the_coordinator_or_reported() {
    let text = "networks:\n  a: {subnet: 10.1.0.0/24}\n  a: {subnet: 10.2.0.0/24, subnet: x}\n";
    let read = read_text(text);
    let names: Vec<&str> = read
        .document
        .networks
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["a", "a"],
        "the coordinator says which is given twice"
    );
    let second = read.origins.of("networks/1/name").expect("origin");
    assert_eq!(locate(text, second).expect("position").to_string(), "3:3");
    assert_eq!(errors(text), [r#"3:28: "subnet" is given twice"#]);
}

#[test]
fn a_bad_rule_is_left_out_and_the_rest_still_checked() {
    let text = "policies:
  - name: p
    network: web
    rules:
      - deny: {from: web, to: x, ports: [\"9000-8000\"]}
      - allow-ingress-from: ghost:80
";
    let read = read_text(text);
    assert_eq!(
        errors(text),
        ["5:42: port range 9000-8000 is upside down; write 8000-9000"]
    );
    let p = &read.document.policies[0];
    assert_eq!(p.rules.len(), 1);
    let peer = read.origins.of("policies/0/rules/0/peer").expect("origin");
    assert_eq!(locate(text, peer).expect("position").to_string(), "6:29");
}
