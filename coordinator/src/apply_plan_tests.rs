//! The planner on plain values: create, update, no change, prune, and what it refuses.

use shibafu_overlay::api::{CreateNetwork, Document, LinkNetworks, ServiceSpec};
use shibafu_overlay::model::{Action, Direction, Isolation, Rule};

use super::*;
use crate::apply_desired::desired;

fn net(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnet: subnet.into(),
        ..CreateNetwork::default()
    }
}

fn policy(name: &str, network: &str, rules: &[(Action, Direction, &str)]) -> Policy {
    let rules = rules
        .iter()
        .map(|(a, d, text)| Rule::parse(*a, *d, text).expect("rule"))
        .collect();
    Policy::new(name, network, rules)
}

/// A document with networks frontend and backend linked, a service and a policy.
fn doc() -> Document {
    Document {
        networks: vec![
            net("frontend", "172.21.0.0/24"),
            net("backend", "172.22.0.0/24"),
        ],
        links: vec![LinkNetworks {
            a: "frontend".into(),
            b: "backend".into(),
        }],
        services: vec![ServiceSpec {
            network: "backend".into(),
            name: "api".into(),
            port: Some(8080),
            port_name: Some("api".into()),
            ..ServiceSpec::default()
        }],
        policies: vec![policy(
            "p",
            "backend",
            &[(Action::Allow, Direction::Ingress, "frontend:8080")],
        )],
    }
}

fn run(doc: &Document, current: &Current, prune: bool) -> (Vec<Step>, Vec<Problem>) {
    let (d, mut problems) = desired(doc, current, prune);
    let (steps, more) = plan(current, &d, prune);
    problems.extend(more);
    (steps, problems)
}

fn lines(steps: &[Step]) -> Vec<String> {
    steps.iter().map(|s| s.change().to_string()).collect()
}

/// `current` with `steps` done.
fn converge(current: &Current, steps: &[Step]) -> Current {
    let mut c = current.clone();
    for step in steps {
        match step.clone() {
            Step::CreateNetwork(n) => c.networks.push(n),
            Step::UpdateNetwork { new, .. } => {
                c.networks.retain(|n| n.name != new.name);
                c.networks.push(new);
            }
            Step::RemoveNetwork(name) => c.networks.retain(|n| n.name != name),
            Step::CreateLink(l) => c.links.push(l),
            Step::RemoveLink(l) => c.links.retain(|x| *x != l),
            Step::PutService { new, .. } => {
                c.services
                    .retain(|s| (&s.network, &s.name) != (&new.network, &new.name));
                c.services.push(new);
            }
            Step::RemoveService(s) => c.services.retain(|x| *x != s),
            Step::PutPolicy { new, .. } => {
                c.policies.retain(|p| p.name != new.name);
                c.policies.push(new);
            }
            Step::RemovePolicy(p) => c.policies.retain(|x| *x != p),
        }
    }
    c
}

#[test]
fn creates_everything_then_has_nothing_to_do() {
    let (steps, problems) = run(&doc(), &Current::default(), false);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        lines(&steps),
        [
            "+ network frontend",
            "+ network backend",
            "+ link backend frontend",
            "+ service backend/api",
            "+ policy p",
        ]
    );
    let vnis: Vec<u32> = steps
        .iter()
        .filter_map(|s| match s {
            Step::CreateNetwork(n) => Some(n.vni),
            _ => None,
        })
        .collect();
    assert_eq!(vnis, [4096, 4097]);
    let after = converge(&Current::default(), &steps);
    for prune in [false, true] {
        assert_eq!(
            run(&doc(), &after, prune),
            (vec![], vec![]),
            "prune {prune}"
        );
    }
}

#[test]
fn updates_mutable_fields_in_place_and_replaces_services_and_policies() {
    let current = converge(
        &Current::default(),
        &run(&doc(), &Current::default(), false).0,
    );
    let mut changed = doc();
    changed.networks[1].isolation = Isolation::Strict;
    changed.networks[1].forwarders = vec!["8.8.8.8".into()];
    changed.networks[1].mtu = Some(1400);
    changed.services[0].port = Some(9090);
    changed.policies[0] = policy(
        "p",
        "backend",
        &[(Action::Deny, Direction::Ingress, "frontend")],
    );
    let (steps, problems) = run(&changed, &current, false);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        lines(&steps),
        [
            "~ network backend: mtu - -> 1400; forwarders [] -> [8.8.8.8:53]; isolation none -> strict",
            "~ service backend/api: port 8080 -> 9090",
            "~ policy p: rules [--allow-ingress-from frontend:8080/tcp] -> [--deny-ingress-from frontend/any]",
        ]
    );
    let Step::UpdateNetwork { new, old } = &steps[0] else {
        panic!("not an update: {:?}", steps[0]);
    };
    assert_eq!(new.vni, old.vni, "the VNI stays");
}

#[test]
fn refuses_to_change_a_subnet_or_a_zone_in_use() {
    let mut current = converge(
        &Current::default(),
        &run(&doc(), &Current::default(), false).0,
    );
    let mut changed = doc();
    changed.networks[0].subnet = "172.23.0.0/24".into();
    changed.networks[1].zone = Some("be.example".into());
    current.endpoints.insert("backend".into(), 2);
    let (_, problems) = run(&changed, &current, false);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["networks/0/subnet", "networks/1/zone"]);
    assert!(problems[0]
        .error
        .contains("subnet cannot change in place (172.21.0.0/24 -> 172.23.0.0/24)"));
    assert!(problems[1].error.contains("2 endpoint(s) are attached"));
    current.endpoints.clear();
    let (steps, problems) = run(&changed, &current, false);
    assert_eq!(problems.len(), 1, "the zone may change without endpoints");
    assert!(matches!(&steps[0], Step::UpdateNetwork { new, .. } if new.zone == "be.example"));
}

#[test]
fn prunes_only_when_asked_and_never_what_is_in_use() {
    let mut current = converge(
        &Current::default(),
        &run(&doc(), &Current::default(), false).0,
    );
    let smaller = Document {
        networks: vec![net("frontend", "172.21.0.0/24")],
        ..Document::default()
    };
    let (steps, problems) = run(&smaller, &current, false);
    assert_eq!((steps, problems), (vec![], vec![]), "nothing is removed");
    let (steps, problems) = run(&smaller, &current, true);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        lines(&steps),
        [
            "- network backend",
            "- link backend frontend",
            "- service backend/api",
            "- policy p",
        ]
    );
    current.endpoints.insert("backend".into(), 1);
    current
        .instances
        .insert(("backend".into(), "api".into()), 1);
    let (_, problems) = run(&smaller, &current, true);
    let messages: Vec<(&str, bool)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.error.contains("--prune removes only")))
        .collect();
    assert_eq!(messages, [("", true), ("", true)]);
}
