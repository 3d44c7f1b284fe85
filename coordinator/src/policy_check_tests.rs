//! The policy checks on their own, against a fixed set of names.

use std::collections::BTreeSet;

use shibafu_overlay::model::{Action, Direction, Rule};

use super::*;

/// Networks `frontend` and `database`, service `web` on `frontend`, container `api`.
struct Fixed;

impl Names for Fixed {
    fn missing_network(&self, name: &str) -> Option<String> {
        (!["frontend", "database"].contains(&name)).then(|| format!("no network named {name:?}"))
    }

    fn has_service(&self, network: Option<&str>, name: &str) -> bool {
        name == "web" && network.is_none_or(|n| n == "frontend")
    }

    fn has_container(&self, name: &str) -> bool {
        name == "api"
    }

    fn looked_in(&self) -> &'static str {
        " here"
    }
}

fn rule(action: Action, text: &str) -> Rule {
    Rule::parse(action, Direction::Ingress, text).expect("rule")
}

/// (field, kind, error) of every refusal.
fn refusals(policy: &Policy) -> Vec<(String, ErrorKind, String)> {
    check(policy, &Fixed)
        .into_iter()
        .map(|r| (r.field, r.kind, r.error))
        .collect()
}

#[test]
fn a_policy_naming_what_is_there_passes() {
    let policy = Policy {
        service: Some("web".into()),
        ..Policy::new(
            "web-in",
            "frontend",
            vec![
                rule(Action::Allow, "database:5432"),
                rule(Action::Allow, "service:web:80"),
                rule(Action::Deny, "container:api"),
                rule(Action::Deny, "10.0.0.0/8:22/tcp"),
                rule(Action::Allow, "any/icmp"),
            ],
        )
    };
    assert_eq!(refusals(&policy), []);
}

#[test]
fn every_fault_is_refused_at_its_part_with_its_kind() {
    let mut host_bits = rule(Action::Allow, "10.0.0.0/8");
    host_bits.peer = Peer::Cidr("10.1.2.3/8".parse().expect("cidr"));
    let mut port_zero = rule(Action::Allow, "database:5432");
    port_zero.ports[0].from = 0;
    let policy = Policy {
        service: Some("web".into()),
        ..Policy::new(
            "p",
            "legacy",
            vec![
                port_zero,
                host_bits,
                rule(Action::Deny, "nowhere"),
                rule(Action::Allow, "service:ghost"),
                rule(Action::Deny, "container:ghost:22"),
                rule(Action::Allow, "frontend"),
            ],
        )
    };
    let found = refusals(&policy);
    let parts: Vec<(&str, ErrorKind)> = found.iter().map(|(f, k, _)| (f.as_str(), *k)).collect();
    assert_eq!(
        parts,
        [
            ("network", ErrorKind::NotFound),
            ("rules/0", ErrorKind::Invalid),
            ("rules/1/peer", ErrorKind::Invalid),
            ("rules/2/peer", ErrorKind::NotFound),
            ("rules/3/peer", ErrorKind::NotFound),
            ("rules/4/peer", ErrorKind::NotFound),
        ],
        "the selected service is not looked for on a network that is not there: {found:#?}"
    );
    let errors: Vec<&str> = found.iter().map(|(_, _, e)| e.as_str()).collect();
    assert_eq!(
        errors,
        [
            r#"policy "p": no network named "legacy""#,
            r#"policy "p": rule `--allow-ingress-from database:0-5432/tcp`: invalid port 0 in "0-5432": use 1-65535"#,
            r#"policy "p": rule `--allow-ingress-from 10.1.2.3/8/any`: peer 10.1.2.3/8 has host bits set: did you mean 10.0.0.0/8?"#,
            r#"policy "p": rule `--deny-ingress-from nowhere/any`: no network named "nowhere""#,
            r#"policy "p": rule `--allow-ingress-from service:ghost/any`: unknown service "ghost": no network has one here; see `shibafu service ls`"#,
            r#"policy "p": rule `--deny-ingress-from container:ghost:22/tcp`: unknown container "ghost": nothing of that name is attached to any network; see `shibafu ps`"#,
        ]
    );
}

#[test]
fn names_that_are_not_labels_are_refused_and_not_looked_up() {
    let policy = Policy {
        service: Some("Web".into()),
        ..Policy::new("Bad", "Legacy", vec![rule(Action::Allow, "frontend")])
    };
    let found = refusals(&policy);
    assert_eq!(
        found,
        [
            (
                "name".to_string(),
                ErrorKind::Invalid,
                r#"policy "Bad": invalid policy name "Bad": use 1-63 lowercase letters, digits or '-'"#.to_string()
            ),
            (
                "network".to_string(),
                ErrorKind::Invalid,
                r#"policy "Bad": invalid network name "Legacy": use 1-63 lowercase letters, digits or '-'"#.to_string()
            ),
            (
                "service".to_string(),
                ErrorKind::Invalid,
                r#"policy "Bad": invalid service name "Web": use 1-63 lowercase letters, digits or '-'"#.to_string()
            ),
        ]
    );
}

#[test]
fn a_policy_without_rules_or_with_a_service_elsewhere_is_refused() {
    let policy = Policy {
        service: Some("web".into()),
        ..Policy::new("p", "database", vec![])
    };
    let found = refusals(&policy);
    let fields: BTreeSet<&str> = found.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(fields, BTreeSet::from(["rules", "service"]), "{found:#?}");
    assert_eq!(
        found[0].2,
        r#"policy "p": no service "web" on network "database" here; see `shibafu service ls`"#
    );
    assert_eq!(found[0].1, ErrorKind::NotFound);
    assert_eq!(
        found[1].2,
        r#"policy "p" has no rules: give at least one --allow-/--deny- flag"#
    );
    assert_eq!(found[1].1, ErrorKind::Invalid);
}
