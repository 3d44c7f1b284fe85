use shibafu_overlay::model::{IpamBlock, Link, VNI_MIN};
use shibafu_overlay::store::keys::Prefix;
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::racing_store::{RacingStore, Rival};

fn req(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnet: subnet.into(),
        ..CreateNetwork::default()
    }
}

/// Every key and value in the store, to prove a failed call changed nothing.
async fn dump(store: &dyn Store) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

async fn put_json<T: serde::Serialize>(store: &dyn Store, key: Key, v: &T) {
    store
        .put(&key.to_string(), serde_json::to_vec(v).expect("json"), None)
        .await
        .expect("put");
}

fn endpoint(network: &str, name: &str, node: &str, n: u8) -> Endpoint {
    Endpoint {
        name: name.into(),
        ..Endpoint::new(
            network,
            &format!("{node}-{name}"),
            node,
            std::net::Ipv4Addr::new(172, 22, 0, n),
        )
    }
}

async fn attach(store: &dyn Store, network: &str, name: &str, node: &str, n: u8) {
    let ep = endpoint(network, name, node, n);
    let key = Key::Endpoint {
        network: network.into(),
        id: ep.id.clone(),
    };
    put_json(store, key, &ep).await;
}

#[tokio::test]
async fn create_list_get() {
    let store = MemoryStore::new();
    let a = create_network(&store, &req("frontend", "172.21.0.0/24"))
        .await
        .expect("a");
    let b = create_network(&store, &req("backend", "172.22.0.0/24"))
        .await
        .expect("b");
    assert_eq!((a.vni, b.vni), (VNI_MIN, VNI_MIN + 1));
    assert_eq!(a.zone, "frontend.local");
    let names: Vec<String> = list_networks(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["backend", "frontend"]);
    assert_eq!(get_network(&store, "frontend").await.expect("get"), a);
    let e = get_network(&store, "nope").await.expect_err("404");
    assert_eq!(
        (e.kind, e.error.as_str()),
        (ErrorKind::NotFound, r#"no network named "nope""#)
    );
}

#[tokio::test]
async fn rejected_creates_change_nothing() {
    let store = MemoryStore::new();
    create_network(&store, &req("legacy", "172.22.0.0/16"))
        .await
        .expect("legacy");
    let before = dump(&store).await;
    let cases = [
        (req("backend", "172.22.0.0/24"), ErrorKind::Overlap),
        (req("legacy", "10.0.0.0/24"), ErrorKind::Duplicate),
        (req("Bad", "10.0.0.0/24"), ErrorKind::Invalid),
        (req("x", "10.0.0.0/33"), ErrorKind::Invalid),
        (req("x", "10.0.0.1/24"), ErrorKind::Invalid),
    ];
    for (r, kind) in cases {
        let e = create_network(&store, &r).await.expect_err("rejected");
        assert_eq!(e.kind, kind, "{r:?}: {}", e.error);
    }
    assert_eq!(dump(&store).await, before);
}

#[tokio::test]
async fn malformed_stored_values_are_skipped() {
    let store = MemoryStore::new();
    create_network(&store, &req("good", "10.1.0.0/24"))
        .await
        .expect("good");
    store
        .put(
            &Key::Network("junk".into()).to_string(),
            b"{not json".to_vec(),
            None,
        )
        .await
        .expect("put");
    let nets = list_networks(&store).await.expect("list");
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].name, "good");
}

#[tokio::test]
async fn unavailable_store_is_503() {
    let store = MemoryStore::new();
    store.set_available(false);
    let e = create_network(&store, &req("a", "10.1.0.0/24"))
        .await
        .expect_err("down");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(e.status(), 503);
    assert!(e.error.contains("check --etcd"), "{}", e.error);
    assert_eq!(
        check_store(&store).await.expect_err("down").kind,
        ErrorKind::Unavailable
    );
}

fn racing(rival: CreateNetwork) -> RacingStore {
    RacingStore::new(MemoryStore::new(), Rival::CreateNetwork(rival))
}

#[tokio::test]
async fn concurrent_overlapping_create_loses() {
    let store = racing(req("rival", "172.22.0.0/16"));
    let e = create_network(&store, &req("backend", "172.22.0.0/24"))
        .await
        .expect_err("overlap");
    assert_eq!(e.kind, ErrorKind::Overlap);
    assert!(
        e.error.contains(r#"overlaps network "rival""#),
        "{}",
        e.error
    );
    let names: Vec<String> = list_networks(&store.inner)
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["rival"]);
}

#[tokio::test]
async fn concurrent_creates_get_distinct_vnis() {
    let store = racing(req("rival", "10.9.0.0/24"));
    let mine = create_network(&store, &req("mine", "10.8.0.0/24"))
        .await
        .expect("retried");
    let rival = get_network(&store.inner, "rival").await.expect("rival");
    assert_eq!(rival.vni, VNI_MIN);
    assert_eq!(mine.vni, VNI_MIN + 1);
}

#[tokio::test]
async fn concurrent_same_name_is_duplicate() {
    let store = racing(req("same", "10.9.0.0/24"));
    let e = create_network(&store, &req("same", "10.8.0.0/24"))
        .await
        .expect_err("dup");
    assert_eq!(e.kind, ErrorKind::Duplicate);
}

async fn seed_backend(store: &dyn Store) {
    create_network(store, &req("backend", "172.22.0.0/24"))
        .await
        .expect("backend");
    create_network(store, &req("frontend", "172.21.0.0/24"))
        .await
        .expect("frontend");
    attach(store, "backend", "api", "node1", 5).await;
    attach(store, "backend", "db", "node2", 6).await;
    attach(store, "frontend", "web", "node1", 7).await;
    let block = IpamBlock {
        schema: SCHEMA_VERSION,
        network: "backend".into(),
        cidr: "172.22.0.0/28".parse().expect("cidr"),
        node: "node1".into(),
    };
    put_json(
        store,
        Key::IpamBlock {
            network: "backend".into(),
            cidr: "172.22.0.0/28".into(),
        },
        &block,
    )
    .await;
    put_json(
        store,
        Key::Link("backend".into(), "frontend".into()),
        &Link::new("backend", "frontend"),
    )
    .await;
    store
        .put(
            &Key::Health {
                network: "backend".into(),
                id: "node1-api".into(),
            }
            .to_string(),
            b"{}".to_vec(),
            None,
        )
        .await
        .expect("health");
}

#[tokio::test]
async fn remove_refuses_attached_endpoints_without_force() {
    let store = MemoryStore::new();
    seed_backend(&store).await;
    let before = dump(&store).await;
    let e = remove_network(&store, "backend", false)
        .await
        .expect_err("has endpoints");
    assert_eq!(e.kind, ErrorKind::HasEndpoints);
    assert_eq!(e.status(), 409);
    assert_eq!(
        e.error,
        r#"network "backend" has 2 endpoints attached (api on node1, db on node2): detach them first, or remove with --force"#
    );
    assert_eq!(dump(&store).await, before);
    let e = remove_network(&store, "nope", true).await.expect_err("404");
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn force_remove_takes_everything_of_the_network_and_nothing_else() {
    let store = MemoryStore::new();
    seed_backend(&store).await;
    let removed = remove_network(&store, "backend", true)
        .await
        .expect("forced");
    assert_eq!(
        removed,
        RemovedNetwork {
            name: "backend".into(),
            endpoints: 2,
            ipam_blocks: 1,
            links: 1,
            policies: 0
        }
    );
    let left: Vec<String> = dump(&store).await.into_iter().map(|(k, _)| k).collect();
    assert!(left.iter().all(|k| !k.contains("backend")), "{left:?}");
    assert!(left.contains(&Key::Network("frontend".into()).to_string()));
    assert!(left.contains(
        &Key::Endpoint {
            network: "frontend".into(),
            id: "node1-web".into()
        }
        .to_string()
    ));
}

#[tokio::test]
async fn remove_without_endpoints_releases_blocks() {
    let store = MemoryStore::new();
    create_network(&store, &req("empty", "10.3.0.0/24"))
        .await
        .expect("create");
    store
        .put(
            &Key::IpamBlock {
                network: "empty".into(),
                cidr: "10.3.0.0/28".into(),
            }
            .to_string(),
            b"{}".to_vec(),
            None,
        )
        .await
        .expect("block");
    let removed = remove_network(&store, "empty", false).await.expect("rm");
    assert_eq!((removed.endpoints, removed.ipam_blocks), (0, 1));
    assert!(list_networks(&store).await.expect("list").is_empty());
    let (blocks, _) = store
        .list(&Prefix::BlocksOf("empty".into()).to_string())
        .await
        .expect("list");
    assert!(blocks.is_empty());
}

#[tokio::test]
async fn force_remove_of_a_large_network_uses_batches() {
    let store = MemoryStore::new();
    create_network(&store, &req("big", "10.4.0.0/16"))
        .await
        .expect("create");
    for i in 0..(MAX_TXN_OPS as u16 + 40) {
        let key = Key::Endpoint {
            network: "big".into(),
            id: format!("ep{i}"),
        };
        store
            .put(&key.to_string(), b"{}".to_vec(), None)
            .await
            .expect("ep");
    }
    let removed = remove_network(&store, "big", true).await.expect("rm");
    assert_eq!(removed.endpoints, MAX_TXN_OPS + 40);
    assert!(dump(&store).await.iter().all(|(k, _)| !k.contains("/big")));
}

#[tokio::test]
async fn nodes_are_sorted_with_ages() {
    let store = MemoryStore::new();
    for (name, started) in [("node2", 100), ("node1", 40)] {
        let node = Node {
            schema: SCHEMA_VERSION,
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "0.1.0".into(),
            wg: None,
            started_at: started,
        };
        put_json(&store, Key::Node(name.into()), &node).await;
    }
    let nodes = list_nodes(&store, 160).await.expect("nodes");
    let got: Vec<(String, u64)> = nodes.into_iter().map(|n| (n.name, n.age_secs)).collect();
    assert_eq!(got, [("node1".to_string(), 120), ("node2".to_string(), 60)]);
}

#[tokio::test]
async fn an_encrypted_network_is_refused_while_a_node_has_no_key() {
    let store = MemoryStore::new();
    let old = Node {
        schema: SCHEMA_VERSION,
        name: "old1".into(),
        underlay: "10.0.0.1".parse().expect("ip"),
        version: "0.0.9".into(),
        wg: None,
        started_at: 0,
    };
    put_json(&store, Key::Node("old1".into()), &old).await;
    let mut secure = req("secure", "172.30.0.0/24");
    secure.encrypted = true;
    let e = create_network(&store, &secure).await.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.error.contains("old1"), "{}", e.error);
    assert!(list_networks(&store).await.expect("list").is_empty());
    // A clear network is fine, and so is the encrypted one once the node has a key.
    create_network(&store, &req("plain", "172.31.0.0/24"))
        .await
        .expect("clear");
    let new = Node {
        wg: Some(shibafu_overlay::model::NodeWireGuard {
            public_key: "k".into(),
            port: 51820,
            tunnel: "100.64.0.1".parse().expect("ip"),
            next_key: None,
            encrypt_all: false,
        }),
        ..old
    };
    put_json(&store, Key::Node("old1".into()), &new).await;
    create_network(&store, &secure).await.expect("encrypted");
}

#[tokio::test]
async fn problems_are_listed_by_node_and_go_with_the_network() {
    let store = MemoryStore::new();
    create_network(&store, &req("dual", "172.24.0.0/24"))
        .await
        .expect("create");
    assert!(network_problems(&store, "dual")
        .await
        .expect("none")
        .is_empty());
    for node in ["node3", "node2"] {
        let p = NetworkProblem {
            schema: SCHEMA_VERSION,
            network: "dual".into(),
            node: node.into(),
            reason: "overlay MTU 1250 is below 1280".into(),
        };
        put_json(&store, shibafu_overlay::model::Object::key(&p), &p).await;
    }
    let problems = network_problems(&store, "dual").await.expect("list");
    let nodes: Vec<&str> = problems.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes, ["node2", "node3"]);
    let missing = network_problems(&store, "nope").await.expect_err("unknown");
    assert_eq!(missing.kind, ErrorKind::NotFound);
    remove_network(&store, "dual", false).await.expect("rm");
    let (left, _) = store
        .list(&Prefix::Problems.to_string())
        .await
        .expect("list");
    assert!(left.is_empty(), "problem reports outlived the network");
}
