//! Policy operations against the in-memory store.

use shibafu_overlay::api::{CreateNetwork, ServiceSpec};
use shibafu_overlay::model::{Direction, Rule};
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::cluster::{create_network, remove_network};
use crate::racing_store::{RacingStore, Rival};
use crate::services::create_service;

/// frontend (service web, container api), backend, database.
async fn cluster() -> MemoryStore {
    let store = MemoryStore::new();
    for (name, subnet) in [
        ("frontend", "172.21.0.0/24"),
        ("backend", "172.22.0.0/24"),
        ("database", "172.23.0.0/24"),
    ] {
        let req = CreateNetwork {
            name: name.into(),
            subnet: subnet.into(),
            ..CreateNetwork::default()
        };
        create_network(&store, &req).await.expect("network");
    }
    let web = ServiceSpec {
        network: "frontend".into(),
        name: "web".into(),
        ..ServiceSpec::default()
    };
    create_service(&store, &web).await.expect("service");
    let api = Endpoint::new(
        "frontend",
        "api",
        "node1",
        "172.21.0.2".parse().expect("ip"),
    );
    store.put_object(&api, None).await.expect("endpoint");
    store
}

fn rule(action: Action, text: &str) -> Rule {
    Rule::parse(action, Direction::Ingress, text).expect("rule")
}

/// `database-isolation` on database: deny frontend, allow backend:5432.
fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        network: "database".into(),
        service: None,
        rules: vec![
            rule(Action::Deny, "frontend"),
            rule(Action::Allow, "backend:5432"),
        ],
    }
}

/// Every key and value in the store, to prove a refused call changed nothing.
async fn dump(store: &dyn Store) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

async fn count(store: &dyn Store, policy: &str, node: &str, rules: Vec<u64>, isolation: u64) {
    let c = PolicyCounters {
        schema: SCHEMA_VERSION,
        policy: policy.into(),
        node: node.into(),
        rules,
        isolation_dropped: isolation,
    };
    store.put_object(&c, None).await.expect("counters");
}

#[tokio::test]
async fn refused_creates_say_why_and_write_nothing() {
    let store = cluster().await;
    create_policy(&store, &spec("taken")).await.expect("first");
    let before = dump(&store).await;
    let with = |f: fn(&mut PolicySpec)| {
        let mut s = spec("p");
        f(&mut s);
        s
    };
    let host_bits: Rule = serde_json::from_value(serde_json::json!({
        "action": "allow", "direction": "ingress",
        "peer": {"kind": "cidr", "value": "10.1.2.3/8"}, "proto": "any"
    }))
    .expect("rule");
    let cases = [
        (
            spec("taken"),
            ErrorKind::Duplicate,
            r#"policy "taken" already exists"#,
        ),
        (
            with(|s| s.rules.clear()),
            ErrorKind::Invalid,
            "has no rules",
        ),
        (
            with(|s| s.name = "Bad".into()),
            ErrorKind::Invalid,
            "invalid policy name",
        ),
        (
            with(|s| s.rules[1].ports[0].from = 0),
            ErrorKind::Invalid,
            "invalid port 0",
        ),
        (
            PolicySpec {
                rules: vec![host_bits],
                ..spec("p")
            },
            ErrorKind::Invalid,
            "10.1.2.3/8 has host bits set: did you mean 10.0.0.0/8?",
        ),
        (
            with(|s| s.network = "nope".into()),
            ErrorKind::NotFound,
            r#"policy "p": no network named "nope""#,
        ),
        (
            with(|s| s.service = Some("web".into())),
            ErrorKind::NotFound,
            r#"no service "web" on network "database""#,
        ),
        (
            with(|s| s.rules.push(rule(Action::Allow, "legacy"))),
            ErrorKind::NotFound,
            r#"rule `--allow-ingress-from legacy/any`: no network named "legacy""#,
        ),
        (
            with(|s| s.rules.push(rule(Action::Allow, "service:ghost"))),
            ErrorKind::NotFound,
            r#"unknown service "ghost""#,
        ),
        (
            with(|s| s.rules.push(rule(Action::Deny, "container:ghost:22"))),
            ErrorKind::NotFound,
            r#"unknown container "ghost""#,
        ),
    ];
    for (bad, kind, says) in cases {
        let e = create_policy(&store, &bad).await.expect_err("refused");
        assert_eq!(e.kind, kind, "{bad:?}: {}", e.error);
        assert!(e.error.contains(says), "{bad:?}: {}", e.error);
    }
    assert_eq!(
        dump(&store).await,
        before,
        "a refused create left something"
    );
}

#[tokio::test]
async fn known_peers_and_a_selected_service_are_accepted() {
    let store = cluster().await;
    let p = create_policy(
        &store,
        &PolicySpec {
            name: "web-in".into(),
            network: "frontend".into(),
            service: Some("web".into()),
            rules: vec![
                rule(Action::Allow, "service:web:80"),
                rule(Action::Allow, "container:api"),
                rule(Action::Deny, "10.0.0.0/8:22/tcp"),
                rule(Action::Allow, "any/icmp"),
            ],
        },
    )
    .await
    .expect("create");
    assert_eq!(p.schema, SCHEMA_VERSION);
    create_policy(&store, &spec("db")).await.expect("second");
    let names: Vec<String> = list_policies(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["db", "web-in"]);
    let stored = get_policy(&store, "web-in").await.expect("inspect");
    assert_eq!(stored.policy, p);
    assert!(stored.nodes.is_empty());
}

#[tokio::test]
async fn inspect_sums_counters_over_nodes_and_skips_stale_and_corrupt_ones() {
    let store = cluster().await;
    create_policy(&store, &spec("db")).await.expect("create");
    create_policy(&store, &spec("db-2")).await.expect("create");
    count(&store, "db", "node2", vec![10, 20], 3).await;
    count(&store, "db", "node1", vec![1, 2], 1).await;
    count(&store, "db", "node3", vec![500], 100).await;
    count(&store, "db-2", "node1", vec![7, 7], 7).await;
    let corrupt = Key::PolicyCounters {
        policy: "db".into(),
        node: "node4".into(),
    };
    store
        .put(&corrupt.to_string(), b"{".to_vec(), None)
        .await
        .expect("corrupt");
    let info = get_policy(&store, "db").await.expect("inspect");
    assert_eq!(
        info.rules,
        [
            RuleCounters {
                rule: "--deny-ingress-from frontend/any".into(),
                allowed: 0,
                dropped: 11,
            },
            RuleCounters {
                rule: "--allow-ingress-from backend:5432/tcp".into(),
                allowed: 22,
                dropped: 0,
            },
        ]
    );
    assert_eq!(info.isolation_dropped, 4);
    assert_eq!(info.nodes, ["node1", "node2"]);
    let e = get_policy(&store, "nope").await.expect_err("404");
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn remove_takes_the_counters_and_only_them() {
    let store = cluster().await;
    create_policy(&store, &spec("db")).await.expect("create");
    let before = dump(&store).await;
    create_policy(&store, &spec("db-2")).await.expect("create");
    count(&store, "db-2", "node1", vec![1, 1], 0).await;
    for i in 0..(MAX_TXN_OPS + 5) {
        count(&store, "db", &format!("node{i}"), vec![1, 1], 0).await;
    }
    let gone = remove_policy(&store, "db-2").await.expect("rm");
    assert_eq!(gone.name, "db-2");
    let left: Vec<String> = dump(&store).await.into_iter().map(|(k, _)| k).collect();
    assert!(left.iter().all(|k| !k.contains("db-2")), "{left:?}");
    remove_policy(&store, "db").await.expect("rm in batches");
    let keys =
        |kvs: Vec<(String, Vec<u8>)>| -> Vec<String> { kvs.into_iter().map(|(k, _)| k).collect() };
    let mut expected = keys(before);
    expected.retain(|k| *k != Key::Policy("db".into()).to_string());
    assert_eq!(
        keys(dump(&store).await),
        expected,
        "only the policies and their counters went"
    );
    let e = remove_policy(&store, "db").await.expect_err("404");
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn removing_a_network_takes_the_policies_selecting_it_not_those_naming_it() {
    let store = cluster().await;
    create_policy(&store, &spec("db"))
        .await
        .expect("selects database");
    count(&store, "db", "node1", vec![1, 1], 0).await;
    let peer = PolicySpec {
        name: "to-db".into(),
        network: "backend".into(),
        service: None,
        rules: vec![Rule::parse(Action::Allow, Direction::Egress, "database:5432").expect("rule")],
    };
    create_policy(&store, &peer).await.expect("names database");
    let removed = remove_network(&store, "database", false).await.expect("rm");
    assert_eq!(removed.policies, 1);
    let names: Vec<String> = list_policies(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["to-db"], "a peer that is gone matches nothing");
    let left: Vec<String> = dump(&store).await.into_iter().map(|(k, _)| k).collect();
    assert!(
        left.iter().all(|k| !k.contains("policy-counters/db/")),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_policy_for_a_network_removed_meanwhile_is_not_written() {
    let store = RacingStore::new(cluster().await, Rival::RemoveNetwork("database"));
    let e = create_policy(&store, &spec("db")).await.expect_err("gone");
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.error);
    assert!(list_policies(&store.inner).await.expect("ls").is_empty());
}

#[tokio::test]
async fn a_policy_made_while_its_network_is_removed_goes_too() {
    let store = RacingStore::new(cluster().await, Rival::Policy(spec("db")));
    let removed = remove_network(&store, "database", false)
        .await
        .expect("removed after a retry");
    assert_eq!(removed.policies, 1);
    assert!(list_policies(&store.inner).await.expect("ls").is_empty());
}

#[tokio::test]
async fn create_and_apply_refuse_a_bad_policy_in_the_same_words() {
    let store = cluster().await;
    let mut host_bits = rule(Action::Allow, "10.0.0.0/8");
    host_bits.peer = Peer::Cidr("10.1.2.3/8".parse().expect("cidr"));
    let current = crate::apply_plan::Current {
        networks: crate::cluster::list_networks(&store)
            .await
            .expect("networks"),
        containers: ["api".to_string()].into(),
        ..Default::default()
    };
    for bad in [host_bits, rule(Action::Deny, "container:ghost:22")] {
        let mut s = spec("p");
        s.rules.push(bad);
        let created = create_policy(&store, &s).await.expect_err("refused");
        let doc = shibafu_overlay::api::Document {
            policies: vec![s.to_policy()],
            ..Default::default()
        };
        let (_, problems) = crate::apply_desired::desired(&doc, &current, false);
        let applied: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.error.as_str()))
            .collect();
        assert_eq!(
            applied,
            [("policies/0/rules/2/peer", created.error.as_str())]
        );
    }
}
