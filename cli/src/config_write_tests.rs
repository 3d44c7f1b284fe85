//! Exports read back as the same document, and look like the files people write.

use shibafu_overlay::api::LinkNetworks;
use shibafu_overlay::model::{Action, Direction, Rule};

use super::*;
use crate::config_read::read;
use crate::yaml::parse;

fn rule(action: Action, direction: Direction, text: &str) -> Rule {
    Rule::parse(action, direction, text).expect("rule")
}

/// A document as the coordinator exports it: defaults left out.
fn exported() -> Document {
    Document {
        networks: vec![
            CreateNetwork {
                name: "backend".into(),
                subnet: "172.22.0.0/24".into(),
                subnet6: Some("fd00:22::/64".into()),
                mtu: Some(1400),
                internal: true,
                isolation: Isolation::Strict,
                forwarders: vec!["10.0.0.53:5353".into(), "[fd00::53]:5353".into()],
                ..CreateNetwork::default()
            },
            CreateNetwork {
                name: "frontend".into(),
                subnet: "172.21.0.0/24".into(),
                zone: Some("web.example".into()),
                forwarders: vec!["8.8.8.8".into()],
                ..CreateNetwork::default()
            },
            CreateNetwork {
                name: "123".into(),
                subnet: "172.23.0.0/24".into(),
                ..CreateNetwork::default()
            },
        ],
        links: vec![LinkNetworks {
            a: "backend".into(),
            b: "frontend".into(),
        }],
        services: vec![
            ServiceSpec {
                network: "backend".into(),
                name: "api".into(),
                lb: Some(LbPolicy::Weighted),
                port: Some(8080),
                port_name: Some("api".into()),
                protocol: Some(Protocol::Udp),
                all_unhealthy: Some(AllUnhealthy::FailOpen),
                health: HealthSpec {
                    probe: Some(Probe::Cmd {
                        argv: vec!["test".into(), "-f".into(), "/ready file".into()],
                    }),
                    interval_ms: Some(120_000),
                    timeout_ms: Some(250),
                    rise: Some(3),
                    fall: Some(1),
                    start_period_ms: Some(0),
                },
            },
            ServiceSpec {
                network: "frontend".into(),
                name: "web".into(),
                health: HealthSpec {
                    probe: Some(Probe::Http {
                        port: 80,
                        path: "/healthz".into(),
                    }),
                    ..HealthSpec::default()
                },
                ..ServiceSpec::default()
            },
        ],
        policies: vec![Policy {
            service: Some("api".into()),
            ..Policy::new(
                "api-in",
                "backend",
                vec![
                    rule(Action::Allow, Direction::Ingress, "frontend:8080,9000-9100"),
                    rule(Action::Deny, Direction::Egress, "fd00::/64:443/udp"),
                    rule(Action::Allow, Direction::Ingress, "service:web"),
                    rule(Action::Deny, Direction::Ingress, "any/icmp"),
                ],
            )
        }],
    }
}

#[test]
fn an_export_reads_back_as_the_same_document() {
    let doc = exported();
    let text = render(&doc).expect("render");
    let back = read(&parse(&text).expect("yaml"));
    assert!(back.errors.is_empty(), "{:?}\n{text}", back.errors);
    assert_eq!(back.document, doc, "{text}");
    assert_eq!(render(&Document::default()).expect("empty"), HEADER);
    let empty = read(&parse(&render(&Document::default()).expect("empty")).expect("yaml"));
    assert_eq!(empty.document, Document::default());
}

#[test]
fn an_export_reads_like_the_phase_plan() {
    let doc = Document {
        networks: exported().networks[1..].to_vec(),
        links: vec![LinkNetworks {
            a: "123".into(),
            b: "frontend".into(),
        }],
        policies: vec![Policy::new(
            "web-db-isolation",
            "database",
            vec![rule(Action::Allow, Direction::Ingress, "backend:5432")],
        )],
        ..Document::default()
    };
    assert_eq!(
        render(&doc).expect("render"),
        format!(
            "{HEADER}networks:
  frontend:
    subnet: 172.21.0.0/24
    dns:
      zone: web.example
      forwarders:
      - 8.8.8.8
  '123':
    subnet: 172.23.0.0/24
links:
- ['123', frontend]
policies:
- name: web-db-isolation
  network: database
  rules:
  - allow-ingress-from: backend:5432/tcp
"
        )
    );
}
