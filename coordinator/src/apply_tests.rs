//! Applying documents to the in-memory store: all or nothing, idempotent, dry runs, prune,
//! export round trip, and lost races.

use shibafu_overlay::api::{CreateNetwork, LinkNetworks, ServiceSpec};
use shibafu_overlay::model::{
    Action, Direction, HealthSpec, Isolation, LbPolicy, Policy, Probe, Rule,
};
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::racing_store::{RacingStore, Rival};

fn net(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnet: subnet.into(),
        ..CreateNetwork::default()
    }
}

fn rule(action: Action, text: &str) -> Rule {
    Rule::parse(action, Direction::Ingress, text).expect("rule")
}

/// The phase plan's file, as the CLI sends it.
fn seed() -> Document {
    let frontend = CreateNetwork {
        zone: Some("frontend.local".into()),
        forwarders: vec!["8.8.8.8".into(), "8.8.4.4".into()],
        ..net("frontend", "172.21.0.0/24")
    };
    let backend = CreateNetwork {
        isolation: Isolation::Strict,
        ..net("backend", "172.22.0.0/24")
    };
    let rules = vec![
        rule(Action::Deny, "frontend"),
        rule(Action::Allow, "backend:5432"),
    ];
    Document {
        networks: vec![frontend, backend],
        policies: vec![Policy::new("web-db-isolation", "database", rules)],
        ..Document::default()
    }
}

/// A cluster holding network `database`, which the seed's policy names.
async fn cluster() -> MemoryStore {
    let store = MemoryStore::new();
    cluster::create_network(&store, &net("database", "172.23.0.0/24"))
        .await
        .expect("database");
    store
}

async fn dump(store: &dyn Store) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn request(document: Document, dry_run: bool, prune: bool) -> ApplyRequest {
    ApplyRequest {
        document,
        dry_run,
        prune,
    }
}

fn lines(answer: &ApplyAnswer) -> Vec<String> {
    answer.changes.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn the_seed_applies_once_then_changes_nothing() {
    let store = cluster().await;
    let before = dump(&store).await;
    let dry = apply(&store, &request(seed(), true, false))
        .await
        .expect("dry run");
    assert_eq!(
        lines(&dry),
        [
            "+ network frontend",
            "+ network backend",
            "+ policy web-db-isolation"
        ]
    );
    assert!(!dry.applied);
    assert_eq!(dump(&store).await, before, "a dry run writes nothing");
    let done = apply(&store, &request(seed(), false, false))
        .await
        .expect("apply");
    assert_eq!((lines(&done), done.applied), (lines(&dry), true));
    let backend = cluster::get_network(&store, "backend")
        .await
        .expect("backend");
    assert_eq!((backend.isolation, backend.vni), (Isolation::Strict, 4098));
    let frontend = cluster::get_network(&store, "frontend")
        .await
        .expect("frontend");
    assert_eq!(frontend.forwarders.len(), 2);
    let after = dump(&store).await;
    let again = apply(&store, &request(seed(), false, false))
        .await
        .expect("again");
    assert_eq!(again, ApplyAnswer::default(), "no changes");
    assert_eq!(dump(&store).await, after);
}

#[tokio::test]
async fn an_invalid_document_changes_nothing() {
    let store = cluster().await;
    let mut doc = seed();
    doc.networks.push(net("extra", "172.30.0.0/24"));
    doc.networks[1].subnet = "172.22.0.0/33".into();
    doc.links.push(LinkNetworks {
        a: "frontend".into(),
        b: "nowhere".into(),
    });
    let before = dump(&store).await;
    let e = apply(&store, &request(doc, false, false))
        .await
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.error,
        "the document has 2 problem(s); nothing was changed"
    );
    let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["networks/1/subnet", "links/0/b"]);
    assert_eq!(dump(&store).await, before, "not even the valid networks");
}

#[tokio::test]
async fn prune_removes_what_the_document_does_not_name() {
    let store = cluster().await;
    let mut doc = seed();
    doc.networks.push(net("database", "172.23.0.0/24"));
    doc.links.push(LinkNetworks {
        a: "frontend".into(),
        b: "backend".into(),
    });
    doc.services.push(ServiceSpec {
        network: "backend".into(),
        name: "api".into(),
        ..ServiceSpec::default()
    });
    apply(&store, &request(doc.clone(), false, true))
        .await
        .expect("apply");
    let mut smaller = doc.clone();
    smaller.links.clear();
    smaller.services.clear();
    smaller.policies.clear();
    smaller.networks.retain(|n| n.name != "frontend");
    let kept = apply(&store, &request(smaller.clone(), false, false))
        .await
        .expect("without prune");
    assert_eq!(
        kept,
        ApplyAnswer::default(),
        "nothing removed without --prune"
    );
    let pruned = apply(&store, &request(smaller.clone(), false, true))
        .await
        .expect("prune");
    assert_eq!(
        lines(&pruned),
        [
            "- network frontend",
            "- link backend frontend",
            "- service backend/api",
            "- policy web-db-isolation"
        ]
    );
    let names: Vec<String> = cluster::list_networks(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["backend", "database"]);
    assert!(crate::links::list_links(&store)
        .await
        .expect("links")
        .is_empty());

    // A network in use is not pruned, and the rest of the change waits for it.
    let endpoint = Endpoint::new("backend", "web", "node1", "172.22.0.9".parse().expect("ip"));
    store.put_object(&endpoint, None).await.expect("attach");
    let before = dump(&store).await;
    smaller.networks.retain(|n| n.name != "backend");
    smaller.networks.push(net("new", "172.40.0.0/24"));
    let e = apply(&store, &request(smaller, false, true))
        .await
        .expect_err("in use");
    assert!(
        e.problems[0]
            .error
            .starts_with("network \"backend\" has 1 endpoint(s) attached"),
        "{e:?}"
    );
    assert_eq!(dump(&store).await, before);
}

#[tokio::test]
async fn applying_an_export_changes_nothing() {
    let store = cluster().await;
    let mut doc = seed();
    doc.networks[0].subnet6 = Some("fd00:21::/64".into());
    doc.networks[0].mtu = Some(1400);
    doc.networks[0].zone = Some("web.example".into());
    doc.networks[1].internal = true;
    doc.networks[1].forwarders = vec!["10.0.0.53:5353".into()];
    doc.services.push(ServiceSpec {
        network: "backend".into(),
        name: "api".into(),
        lb: Some(LbPolicy::LeastConnections),
        port: Some(8080),
        health: HealthSpec {
            probe: Some(Probe::Http {
                port: 8080,
                path: "/healthz".into(),
            }),
            interval_ms: Some(300),
            fall: Some(5),
            ..HealthSpec::default()
        },
        ..ServiceSpec::default()
    });
    doc.policies.push(Policy {
        service: Some("api".into()),
        ..Policy::new(
            "api-in",
            "backend",
            vec![
                rule(Action::Allow, "10.0.0.0/8:80,443/tcp"),
                rule(Action::Deny, "service:api/udp"),
            ],
        )
    });
    apply(&store, &request(doc, false, false))
        .await
        .expect("apply");
    let exported = export(&store).await.expect("export");
    assert_eq!(exported.networks.len(), 3);
    let (backend, frontend) = (&exported.networks[0], &exported.networks[2]);
    assert_eq!(
        frontend.forwarders,
        ["8.8.8.8", "8.8.4.4"],
        "port 53 left out"
    );
    assert_eq!(frontend.zone.as_deref(), Some("web.example"));
    assert_eq!(backend.forwarders, ["10.0.0.53:5353"]);
    assert_eq!(backend.zone, None, "the default zone is left out");
    let before = dump(&store).await;
    for prune in [false, true] {
        let answer = apply(&store, &request(exported.clone(), false, prune))
            .await
            .expect("re-apply");
        assert_eq!(answer, ApplyAnswer::default(), "prune {prune}");
    }
    assert_eq!(dump(&store).await, before);
}

#[tokio::test]
async fn a_lost_race_is_retried_against_the_new_cluster() {
    // A rival takes frontend's subnet between our reads and our transaction.
    let rival = Rival::CreateNetwork(net("rival", "172.21.0.0/16"));
    let store = RacingStore::new(cluster().await, rival);
    let e = apply(&store, &request(seed(), false, false))
        .await
        .expect_err("overlap");
    assert_eq!(e.problems[0].path, "networks/0/subnet");
    assert!(e.problems[0].error.contains("overlaps network \"rival\""));
    // A rival removes the network a policy is about.
    let store = RacingStore::new(cluster().await, Rival::RemoveNetwork("database"));
    let e = apply(&store, &request(seed(), false, false))
        .await
        .expect_err("gone");
    assert_eq!(e.problems[0].path, "policies/0/network");
    let names: Vec<String> = cluster::list_networks(&store.inner)
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(names.is_empty(), "nothing half applied: {names:?}");
}
