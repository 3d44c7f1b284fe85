//! Command lines of `shibafu network policy` as the issue writes them, and what they print.

use shibafu_overlay::api::RuleCounters;
use shibafu_overlay::model::{Peer, PortRange, Proto};

use super::*;
use crate::args::testing::network;
use crate::args::NetworkCmd;

fn policy(args: &[&str]) -> Result<PolicyCmd, clap::Error> {
    let all: Vec<&str> = std::iter::once("policy")
        .chain(args.iter().copied())
        .collect();
    match network(&all)? {
        NetworkCmd::Policy { cmd } => Ok(cmd),
        other => panic!("not policy: {other:?}"),
    }
}

/// `network policy create --name p --network database ARGS...`
fn create(args: &[&str]) -> Result<CreateArgs, clap::Error> {
    let all: Vec<&str> = ["create", "--name", "p", "--network", "database"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    match policy(&all)? {
        PolicyCmd::Create(c) => Ok(c),
        other => panic!("not create: {other:?}"),
    }
}

fn rules(args: &[&str]) -> Vec<String> {
    let c = create(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    c.rules.0.iter().map(Rule::to_string).collect()
}

#[test]
fn the_example_of_the_issue() {
    let cmd = policy(&[
        "create",
        "--name",
        "database-isolation",
        "--network",
        "database",
        "--deny-ingress-from",
        "frontend",
        "--allow-ingress-from",
        "backend:5432",
    ])
    .expect("create");
    let PolicyCmd::Create(args) = cmd else {
        panic!("not create")
    };
    let s = spec(args).expect("spec");
    assert_eq!(
        (s.name.as_str(), s.network.as_str(), s.service),
        ("database-isolation", "database", None)
    );
    let deny = &s.rules[0];
    assert_eq!(
        (deny.action, deny.direction, &deny.peer, deny.proto),
        (
            Action::Deny,
            Direction::Ingress,
            &Peer::Network("frontend".into()),
            Proto::Any
        )
    );
    let allow = &s.rules[1];
    assert_eq!(
        (allow.action, &allow.peer, &allow.ports[..], allow.proto),
        (
            Action::Allow,
            &Peer::Network("backend".into()),
            &[PortRange {
                from: 5432,
                to: 5432
            }][..],
            Proto::Tcp
        )
    );
}

#[test]
fn rules_keep_the_command_line_order_across_flag_kinds() {
    assert_eq!(
        rules(&[
            "--deny-ingress-from",
            "a",
            "--allow-egress-to",
            "b",
            "--deny-ingress-from",
            "c",
            "--deny-egress-to",
            "d",
            "--allow-ingress-from",
            "e",
            "--allow-egress-to",
            "f",
        ]),
        [
            "--deny-ingress-from a/any",
            "--allow-egress-to b/any",
            "--deny-ingress-from c/any",
            "--deny-egress-to d/any",
            "--allow-ingress-from e/any",
            "--allow-egress-to f/any",
        ]
    );
}

#[test]
fn peers_ports_and_protocol_defaults() {
    assert_eq!(
        rules(&[
            "--allow-ingress-from",
            "backend:5432",
            "--allow-ingress-from",
            "backend",
            "--allow-ingress-from",
            "service:web:80,443",
            "--deny-egress-to",
            "container:api:8000-8100/udp",
            "--allow-egress-to",
            "10.0.0.0/8:53/udp",
            "--deny-ingress-from",
            "any/icmp",
        ]),
        [
            "--allow-ingress-from backend:5432/tcp",
            "--allow-ingress-from backend/any",
            "--allow-ingress-from service:web:80,443/tcp",
            "--deny-egress-to container:api:8000-8100/udp",
            "--allow-egress-to 10.0.0.0/8:53/udp",
            "--deny-ingress-from any/icmp",
        ]
    );
}

#[test]
fn bad_rules_fail_before_any_request_with_the_parsers_message() {
    for (rule, says) in [
        ("backend:0", "invalid port 0"),
        (
            "backend:90-80",
            "port range 90-80 is upside down; write 80-90",
        ),
        ("backend:80/icmp", "icmp has no ports"),
        ("pod:web", r#""pod" is not a peer kind"#),
        ("Pod:web:80", r#"unknown peer kind "Pod""#),
        ("10.0.0.5/8", "has host bits set: did you mean 10.0.0.0/8?"),
        ("backend:99999", "is not a port"),
        ("", "no peer"),
    ] {
        let e = create(&["--allow-ingress-from", rule])
            .expect_err("refused")
            .to_string();
        assert!(e.contains(says), "{rule:?}: {e}");
    }
    let none = spec(create(&[]).expect("parses")).expect_err("no rules");
    assert!(none.to_string().contains("has no rules"), "{none}");
    let mut bad_name = create(&["--deny-egress-to", "any"]).expect("parses");
    bad_name.name = "Bad".into();
    let e = spec(bad_name).expect_err("bad name").to_string();
    assert!(e.contains("invalid policy name \"Bad\""), "{e}");
    assert!(policy(&["create", "--network", "database"]).is_err());
}

#[test]
fn the_other_spellings_parse() {
    for args in [
        &["list"][..],
        &["ls"],
        &["list", "--format", "json"],
        &["inspect", "database-isolation"],
        &["inspect", "database-isolation", "--format", "json"],
        &["rm", "database-isolation"],
        &["remove", "database-isolation"],
        &[
            "create",
            "--name",
            "web-in",
            "--network",
            "frontend",
            "--service",
            "web",
            "--allow-ingress-from",
            "any:80",
        ],
    ] {
        policy(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

fn stored() -> Policy {
    let c = create(&[
        "--deny-ingress-from",
        "frontend",
        "--allow-ingress-from",
        "backend:5432",
    ])
    .expect("create");
    spec(c).expect("spec").to_policy()
}

#[test]
fn list_and_inspect_tables() {
    let mut web = stored();
    web.name = "web-in".into();
    web.network = "frontend".into();
    web.service = Some("web".into());
    web.rules.truncate(1);
    assert_eq!(
        policies_table(&[stored(), web]),
        "NAME     NETWORK    SELECTS       RULES\n\
         p        database   network       2\n\
         web-in   frontend   service:web   1\n"
    );
    let info = PolicyInfo {
        policy: stored(),
        rules: vec![
            RuleCounters {
                rule: "--deny-ingress-from frontend/any".into(),
                allowed: 0,
                dropped: 12,
            },
            RuleCounters {
                rule: "--allow-ingress-from backend:5432/tcp".into(),
                allowed: 340,
                dropped: 0,
            },
        ],
        isolation_dropped: 3,
        nodes: vec!["node1".into(), "node2".into()],
    };
    assert_eq!(
        inspect_text(&info),
        "\
Name:      p
Network:   database
Selects:   network

RULE                                    ALLOWED   DROPPED
--deny-ingress-from frontend/any        -         12
--allow-ingress-from backend:5432/tcp   340       -

Dropped by isolation:   3
Nodes reporting:        node1, node2
"
    );
    let quiet = PolicyInfo {
        nodes: Vec::new(),
        ..info
    };
    assert!(inspect_text(&quiet).ends_with("Nodes reporting:        none yet\n"));
}
