//! Tests of `ClusterState` (kept beside `state.rs`).

use super::*;
use crate::model::SCHEMA_VERSION;

fn net(name: &str, subnet: &str) -> Network {
    Network::new(name, subnet.parse().expect("subnet"), 4096)
}

fn node(name: &str) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: "10.0.0.1".parse().expect("ip"),
        version: "test".into(),
        wg: None,
        started_at: 1,
    }
}

fn ep(network: &str, id: &str, ip: &str) -> Endpoint {
    Endpoint::new(network, id, "n1", ip.parse().expect("ip"))
}

fn block(network: &str, cidr: &str, node: &str) -> IpamBlock {
    IpamBlock {
        schema: SCHEMA_VERSION,
        network: network.into(),
        cidr: cidr.parse().expect("cidr"),
        node: node.into(),
    }
}

fn kv<T: serde::Serialize>(key: &Key, value: &T, rev: i64) -> KeyValue {
    raw(key, serde_json::to_vec(value).expect("json"), rev)
}

fn raw(key: &Key, value: Vec<u8>, rev: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
        create_revision: rev,
        mod_revision: rev,
        lease: 0,
    }
}

fn ep_key(network: &str, id: &str) -> Key {
    Key::Endpoint {
        network: network.into(),
        id: id.into(),
    }
}

fn block_key(network: &str, cidr: &str) -> Key {
    Key::IpamBlock {
        network: network.into(),
        cidr: cidr.into(),
    }
}

fn base_kvs() -> Vec<KeyValue> {
    vec![
        kv(&Key::Network("a".into()), &net("a", "10.1.0.0/24"), 2),
        kv(&Key::Network("b".into()), &net("b", "10.2.0.0/24"), 3),
        kv(&Key::Node("n1".into()), &node("n1"), 4),
        kv(&ep_key("a", "x"), &ep("a", "x", "10.1.0.2"), 5),
        kv(&Key::Link("a".into(), "b".into()), &Link::new("a", "b"), 6),
        kv(
            &block_key("a", "10.1.0.0/26"),
            &block("a", "10.1.0.0/26", "n1"),
            7,
        ),
        raw(&Key::Policy("p".into()), b"{}".to_vec(), 8),
        raw(&ep_key("a", "junk"), b"not json".to_vec(), 9),
    ]
}

fn snapshot(kvs: Vec<KeyValue>, revision: i64) -> ClusterChange {
    ClusterChange::Snapshot { kvs, revision }
}

#[test]
fn first_snapshot_announces_everything_in_dependency_order() {
    let mut s = ClusterState::new();
    let changes = s.apply(&snapshot(base_kvs(), 9));
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| match c {
            StateChange::Network(Change::Added(_)) => "net",
            StateChange::Node(Change::Added(_)) => "node",
            StateChange::Block(Change::Added(_)) => "block",
            StateChange::Endpoint(Change::Added(_)) => "ep",
            StateChange::Link(Change::Added(_)) => "link",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["net", "net", "node", "block", "ep", "link"]);
    assert_eq!(s.revision(), 9);
    assert_eq!(s.endpoints().len(), 1, "the malformed endpoint is skipped");
    assert!(s.linked("b", "a"));
    assert_eq!(s.endpoints_of("a").count(), 1);
    assert_eq!(s.endpoints_of("b").count(), 0);
    assert_eq!(s, ClusterState::from_kvs(&base_kvs(), 9));
}

#[test]
fn events_are_diffed() {
    let mut s = ClusterState::from_kvs(&base_kvs(), 9);
    let put = |e: Endpoint, rev| WatchEvent::Put(kv(&ep_key("a", &e.id), &e, rev));
    let added = s.apply(&ClusterChange::Events(vec![put(
        ep("a", "y", "10.1.0.3"),
        10,
    )]));
    assert_eq!(
        added,
        vec![StateChange::Endpoint(Change::Added(ep(
            "a", "y", "10.1.0.3"
        )))]
    );
    let same = s.apply(&ClusterChange::Events(vec![put(
        ep("a", "y", "10.1.0.3"),
        11,
    )]));
    assert!(same.is_empty(), "an identical rewrite is no change");
    let moved = s.apply(&ClusterChange::Events(vec![put(
        ep("a", "y", "10.1.0.4"),
        12,
    )]));
    assert_eq!(
        moved,
        vec![StateChange::Endpoint(Change::Updated {
            old: ep("a", "y", "10.1.0.3"),
            new: ep("a", "y", "10.1.0.4")
        })]
    );
    let gone = s.apply(&ClusterChange::Events(vec![
        WatchEvent::Delete {
            key: ep_key("a", "y").to_string(),
            mod_revision: 13,
        },
        WatchEvent::Delete {
            key: Key::Node("n1".into()).to_string(),
            mod_revision: 13,
        },
        WatchEvent::Delete {
            key: "/elsewhere".into(),
            mod_revision: 13,
        },
    ]));
    assert_eq!(
        gone,
        vec![
            StateChange::Endpoint(Change::Removed(ep("a", "y", "10.1.0.4"))),
            StateChange::Node(Change::Removed(node("n1")))
        ]
    );
    assert_eq!(s.revision(), 13);
}

#[test]
fn resnapshot_only_announces_differences() {
    let mut s = ClusterState::from_kvs(&base_kvs(), 9);
    let mut kvs = base_kvs();
    kvs.retain(|kv| !kv.key.contains("/links/") && !kv.key.contains("/nodes/"));
    let mut b = net("b", "10.2.0.0/24");
    b.mtu = Some(1400);
    kvs.push(kv(&Key::Network("b".into()), &b, 20));
    kvs.push(kv(&ep_key("b", "z"), &ep("b", "z", "10.2.0.2"), 21));
    let changes = s.apply(&snapshot(kvs, 21));
    assert_eq!(
        changes,
        vec![
            StateChange::Link(Change::Removed(Link::new("a", "b"))),
            StateChange::Node(Change::Removed(node("n1"))),
            StateChange::Network(Change::Updated {
                old: net("b", "10.2.0.0/24"),
                new: b
            }),
            StateChange::Endpoint(Change::Added(ep("b", "z", "10.2.0.2"))),
        ]
    );
    assert_eq!(s.revision(), 21);
}

#[test]
fn bad_values_are_skipped_and_count_as_absent() {
    let count = |kind: &str| {
        skipped_values()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| n)
    };
    let (endpoints, nodes) = (count("endpoints"), count("nodes"));
    let mut s = ClusterState::from_kvs(&base_kvs(), 9);
    let mut future = serde_json::to_value(ep("a", "x", "10.1.0.2")).expect("json");
    future["schema"] = 2.into();
    let events = vec![
        WatchEvent::Put(kv(&ep_key("a", "x"), &future, 10)),
        WatchEvent::Put(kv(&ep_key("a", "w"), &ep("a", "other-id", "10.1.0.9"), 11)),
        WatchEvent::Put(kv(&Key::Network("c".into()), &net("d", "10.3.0.0/24"), 12)),
        WatchEvent::Put(raw(&Key::Node("n2".into()), b"{\"schema\":1}".to_vec(), 13)),
    ];
    let changes = s.apply(&ClusterChange::Events(events));
    assert_eq!(
        changes,
        vec![StateChange::Endpoint(Change::Removed(ep(
            "a", "x", "10.1.0.2"
        )))],
        "an unreadable rewrite removes the old value; other bad values are skipped"
    );
    assert_eq!(s.networks().len(), 2);
    assert_eq!(s.nodes().len(), 1);
    // Counted for the metrics (other tests may count too: at least ours).
    assert!(
        count("endpoints") >= endpoints + 2,
        "{:?}",
        skipped_values()
    );
    assert!(count("nodes") > nodes, "{:?}", skipped_values());
}

#[test]
fn blocks_are_tracked_by_network_and_cidr() {
    let mut s = ClusterState::new();
    let claimed = block("a", "10.1.0.64/26", "n2");
    let key = block_key("a", "10.1.0.64/26");
    let c = s.apply(&ClusterChange::Events(vec![WatchEvent::Put(kv(
        &key, &claimed, 5,
    ))]));
    assert_eq!(c, vec![StateChange::Block(Change::Added(claimed.clone()))]);
    let cidr: Ipv4Net = "10.1.0.64/26".parse().expect("cidr");
    assert_eq!(s.blocks().get(&("a".to_string(), cidr)), Some(&claimed));
    let c = s.apply(&ClusterChange::Events(vec![WatchEvent::Delete {
        key: key.to_string(),
        mod_revision: 6,
    }]));
    assert_eq!(c, vec![StateChange::Block(Change::Removed(claimed))]);
}
