//! Building the desired state: every problem of a document at once, each at its path.

use shibafu_overlay::api::{CreateNetwork, LinkNetworks, ServiceSpec};
use shibafu_overlay::model::{Action, Direction, Peer, Rule};

use super::*;

fn net(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnet: subnet.into(),
        ..CreateNetwork::default()
    }
}

fn link(a: &str, b: &str) -> LinkNetworks {
    LinkNetworks {
        a: a.into(),
        b: b.into(),
    }
}

fn rule(text: &str) -> Rule {
    Rule::parse(Action::Allow, Direction::Ingress, text).expect("rule")
}

/// A cluster holding network `database` (172.30.0.0/24) and its service `pg`.
fn cluster() -> Current {
    let db =
        crate::validate::network_from_request(&net("database", "172.30.0.0/24")).expect("database");
    Current {
        networks: vec![db],
        services: vec![Service::new("database", "pg")],
        containers: ["pg1".to_string()].into(),
        ..Current::default()
    }
}

fn problems(doc: &Document, prune: bool) -> Vec<(String, String)> {
    let (_, problems) = desired(doc, &cluster(), prune);
    problems.into_iter().map(|p| (p.path, p.error)).collect()
}

#[test]
fn references_are_checked_against_the_document_and_the_cluster() {
    let doc = Document {
        networks: vec![net("frontend", "172.21.0.0/24")],
        links: vec![link("frontend", "database")],
        services: vec![ServiceSpec {
            network: "frontend".into(),
            name: "web".into(),
            ..ServiceSpec::default()
        }],
        policies: vec![Policy {
            service: Some("pg".into()),
            ..Policy::new("p", "database", vec![rule("frontend"), rule("service:web")])
        }],
    };
    assert_eq!(problems(&doc, false), []);
    let (d, _) = desired(&doc, &cluster(), false);
    assert_eq!((d.networks.len(), d.links.len()), (1, 1));
    assert_eq!((d.services.len(), d.policies.len()), (1, 1));
    let pruned: Vec<String> = problems(&doc, true).into_iter().map(|p| p.0).collect();
    assert_eq!(
        pruned,
        ["links/0/b", "policies/0/network"],
        "--prune removes database"
    );
}

#[test]
fn every_problem_is_reported_at_its_path() {
    let mut bad_zone = net("backend", "172.22.0.0/24");
    bad_zone.zone = Some("bad..zone".into());
    bad_zone.forwarders = vec!["8.8.8.8".into(), "dns.google".into()];
    let doc = Document {
        networks: vec![
            net("frontend", "172.21.0.0/33"),
            bad_zone,
            net("frontend", "172.23.0.0/24"),
            net("legacy", "172.30.0.0/16"),
        ],
        links: vec![link("frontend", "frontend"), link("frontend", "nowhere")],
        services: vec![ServiceSpec {
            network: "database".into(),
            name: "pg".into(),
            port_name: Some("postgres".into()),
            ..ServiceSpec::default()
        }],
        policies: vec![
            Policy::new("p", "database", vec![rule("service:nope")]),
            Policy::new("p", "database", vec![rule("frontend")]),
            Policy::new("q", "Database", vec![]),
        ],
    };
    let found = problems(&doc, false);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "networks/0/subnet",
            "networks/1/forwarders/1",
            "networks/1/zone",
            "networks/2/name",
            "networks/3/subnet",
            "links/0",
            "links/1/b",
            "services/0/port_name",
            "policies/0/rules/0/peer",
            "policies/1/name",
            "policies/2/network",
            "policies/2/rules",
        ],
        "{found:#?}"
    );
    let says = |i: usize, what: &str| {
        assert!(found[i].1.contains(what), "{:?} lacks {what:?}", found[i]);
    };
    says(0, "invalid subnet \"172.21.0.0/33\"");
    says(1, "invalid forwarder \"dns.google\"");
    says(3, "network \"frontend\" is given twice");
    says(4, "overlaps network \"database\"");
    says(5, "cannot link network \"frontend\" to itself");
    says(6, "no network named \"nowhere\" in the file or the cluster");
    says(7, "--port-name needs --port");
    says(
        8,
        "rule `--allow-ingress-from service:nope/any`: unknown service \"nope\": no network has one in the file or the cluster",
    );
    says(9, "policy \"p\" is given twice");
    says(10, "invalid network name \"Database\"");
    says(11, "policy \"q\" has no rules");
}

#[test]
fn container_peers_must_name_an_attached_container() {
    let doc = Document {
        policies: vec![Policy::new(
            "p",
            "database",
            vec![rule("container:pg1"), rule("container:ghost")],
        )],
        ..Document::default()
    };
    let found = problems(&doc, false);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "policies/0/rules/1/peer");
    assert!(
        found[0].1.contains("unknown container \"ghost\""),
        "{found:?}"
    );
}

#[test]
fn a_cidr_peer_with_host_bits_is_refused_as_policy_create_refuses_it() {
    let mut host_bits = rule("10.9.0.0/16");
    host_bits.peer = Peer::Cidr("10.9.3.4/16".parse().expect("cidr"));
    let doc = Document {
        policies: vec![Policy::new(
            "p",
            "database",
            vec![rule("10.8.0.0/16"), host_bits],
        )],
        ..Document::default()
    };
    let found = problems(&doc, false);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "policies/0/rules/1/peer");
    assert!(
        found[0].1.contains("did you mean 10.9.0.0/16?"),
        "{found:?}"
    );
}
