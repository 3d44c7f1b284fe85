//! The store against a real etcd: watch resume across a server crash, compaction recovery,
//! lease expiry, and the etcd-specific error mapping.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shibafu_overlay::model::{Endpoint, Node, SCHEMA_VERSION};
use shibafu_overlay::state::{Change, ClusterState, StateChange};
use shibafu_overlay::store::compactor::Compactor;
use shibafu_overlay::store::keys::{Key, ROOT};
use shibafu_overlay::store::{
    watch_changes_with, Backoff, ClusterChange, ClusterChangeStream, Compare, Store, StoreError,
    TxnOp, WatchEvent,
};

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(500),
};

async fn next_change(w: &mut ClusterChangeStream) -> ClusterChange {
    tokio::time::timeout(Duration::from_secs(15), w.next())
        .await
        .expect("a change within 15 s")
        .expect("the resilient watch never ends")
}

/// Puts with retries while the server is away; returns once the write is acknowledged.
async fn put_retrying(store: &dyn Store, key: &str) {
    for _ in 0..200 {
        if store.put(key, b"v".to_vec(), None).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("etcd did not come back for {key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_missed_across_an_etcd_crash() {
    let mut etcd = common::Etcd::start();
    let prefix = "/test/resume/";
    let watcher_store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let writer = etcd.store().await;
    let mut w = watch_changes_with(watcher_store, prefix, None, FAST);
    let ClusterChange::Snapshot {
        revision: start, ..
    } = next_change(&mut w).await
    else {
        panic!("the watch starts with a snapshot");
    };
    let mut seen = Vec::new();
    for i in 0..50 {
        put_retrying(&writer, &format!("{prefix}k{}", i % 7)).await;
    }
    while seen.len() < 20 {
        match next_change(&mut w).await {
            ClusterChange::Events(evs) => seen.extend(evs.iter().map(WatchEvent::revision)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The server dies with the watch open and events still unread; writes go on after restart
    // while the watch is disconnected, so they can only arrive through a resume.
    etcd.kill();
    let failed = writer.put(&format!("{prefix}down"), vec![], None).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    etcd.resume();
    for i in 50..150 {
        put_retrying(&writer, &format!("{prefix}k{}", i % 7)).await;
    }
    let (_, end) = writer.list(prefix).await.expect("list");
    while seen.last().copied().unwrap_or(start) < end {
        match next_change(&mut w).await {
            ClusterChange::Events(evs) => seen.extend(evs.iter().map(WatchEvent::revision)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<i64> = (start + 1..=end).collect();
    assert_eq!(seen.len(), expected.len(), "every revision exactly once");
    assert_eq!(seen, expected);
    assert_eq!(
        end - start,
        150,
        "150 acknowledged writes, no more, no fewer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_is_recovered_by_snapshot_then_events() {
    let etcd = common::Etcd::start();
    let store = etcd.store().await;
    let prefix = "/test/compact/";
    let mut old = 0;
    for i in 0..20 {
        let rev = store
            .put(&format!("{prefix}k{i}"), vec![i], None)
            .await
            .expect("put");
        if i == 4 {
            old = rev;
        }
    }
    assert!(store.delete(&format!("{prefix}k0")).await.expect("delete"));
    let (_, now) = store.list(prefix).await.expect("list");
    store.compact(now).await.expect("compact");

    let mut raw = store.watch(prefix, old).await.expect("watch");
    match raw.next().await {
        Some(Err(StoreError::Compacted {
            requested,
            compact_revision,
        })) => assert_eq!((requested, compact_revision), (old, now)),
        other => panic!("expected Compacted, got {other:?}"),
    }

    let shared: Arc<dyn Store> = Arc::new(store);
    let mut w = watch_changes_with(shared.clone(), prefix, Some(old), FAST);
    match next_change(&mut w).await {
        ClusterChange::Snapshot { kvs, revision } => {
            assert_eq!(revision, now);
            assert_eq!(kvs.len(), 19);
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let rev = shared
        .put(&format!("{prefix}new"), vec![], None)
        .await
        .expect("put");
    match next_change(&mut w).await {
        ClusterChange::Events(evs) => {
            assert_eq!(
                evs.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
                [rev]
            );
        }
        other => panic!("expected events, got {other:?}"),
    }
}

fn node_value(name: &str) -> Vec<u8> {
    let node = Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: "10.0.0.7".parse().expect("ip"),
        version: "test".into(),
        wg: None,
        started_at: 0,
    };
    serde_json::to_vec(&node).expect("json")
}

fn endpoint_value(node: &str) -> Vec<u8> {
    let ep = Endpoint::new(
        "frontend",
        &format!("{node}-web"),
        node,
        "172.21.0.2".parse().expect("ip"),
    );
    serde_json::to_vec(&ep).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_removes_a_dead_nodes_keys() {
    let etcd = common::Etcd::start();
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let lease = store.grant_lease(2).await.expect("grant");
    let node_key = Key::Node("n9".into()).to_string();
    let ep_key = Key::Endpoint {
        network: "frontend".into(),
        id: "n9-web".into(),
    }
    .to_string();
    store
        .put(&node_key, node_value("n9"), Some(lease))
        .await
        .expect("node");
    let put_ep = TxnOp::Put {
        key: ep_key.clone(),
        value: endpoint_value("n9"),
        lease: Some(lease),
    };
    let created = store
        .txn(vec![Compare::Absent(ep_key.clone())], vec![put_ep])
        .await
        .expect("txn");
    assert!(created);

    let mut state = ClusterState::new();
    let mut w = watch_changes_with(store.clone(), ROOT, None, FAST);
    let up = state.apply(&next_change(&mut w).await);
    assert_eq!(up.len(), 2, "{up:?}");

    // Kept alive past its TTL, the lease holds.
    for _ in 0..3 {
        let ttl = store.keep_alive(lease).await.expect("keepalive");
        assert!((1..=2).contains(&ttl), "ttl {ttl}");
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert!(store.get(&node_key).await.expect("get").is_some());

    // The agent dies: no more keepalives. etcd deletes both keys within the TTL.
    let mut gone = Vec::new();
    while gone.len() < 2 {
        gone.extend(state.apply(&next_change(&mut w).await));
    }
    assert!(gone
        .iter()
        .any(|c| matches!(c, StateChange::Node(Change::Removed(n)) if n.name == "n9")));
    assert!(gone
        .iter()
        .any(|c| matches!(c, StateChange::Endpoint(Change::Removed(e)) if e.id == "n9-web")));
    assert!(store.get(&ep_key).await.expect("get").is_none());
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(l)) if l == lease
    ));
    assert!(matches!(
        store.put(&node_key, vec![], Some(lease)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.revoke_lease(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_lease_deletes_its_keys_at_once() {
    let etcd = common::Etcd::start();
    let store = etcd.store().await;
    let lease = store.grant_lease(30).await.expect("grant");
    store
        .put("/test/l/a", vec![], Some(lease))
        .await
        .expect("put");
    store.put("/test/l/b", vec![], None).await.expect("put");
    store.revoke_lease(lease).await.expect("revoke");
    let (kvs, _) = store.list("/test/l/").await.expect("list");
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/test/l/b"]
    );
    let stale = Compare::ModRevision("/test/l/b".into(), 1);
    assert!(!store
        .txn(vec![stale], vec![TxnOp::Delete("/test/l/b".into())])
        .await
        .expect("txn"));
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let res =
        shibafu_overlay::store::EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], None)
            .await;
    match res {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("cannot reach etcd"), "{msg}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compactor_keeps_one_interval_of_history_and_two_can_run() {
    let etcd = common::Etcd::start();
    let store = etcd.store().await;
    let key = format!("{ROOT}compactor-test");
    let mut a = Compactor::default();
    let mut b = Compactor::default();
    store.put(&key, b"1".to_vec(), None).await.expect("put");
    assert_eq!(a.pass(&store).await.expect("pass"), None);
    let held = store.list(ROOT).await.expect("list").1;
    assert_eq!(b.pass(&store).await.expect("pass"), None);
    let later = store.put(&key, b"2".to_vec(), None).await.expect("put");
    assert_eq!(a.pass(&store).await.expect("pass"), Some(held));
    // The second coordinator compacts to the same revision: already done, not an error.
    assert_eq!(b.pass(&store).await.expect("pass"), Some(held));
    let mut old = store.watch(&key, held - 1).await.expect("watch");
    match old.next().await {
        Some(Err(StoreError::Compacted {
            compact_revision, ..
        })) => assert_eq!(compact_revision, held),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut kept = store.watch(&key, held).await.expect("watch");
    let events = kept.next().await.expect("an event").expect("history kept");
    assert!(
        matches!(events.last(), Some(WatchEvent::Put(kv)) if kv.mod_revision == later),
        "{events:?}"
    );
    // Compacting below what is already compacted is not an error either.
    store.compact(held - 1).await.expect("already compacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_names_come_without_values_and_within_the_prefix() {
    let etcd = common::Etcd::start();
    let store = etcd.store().await;
    for key in ["/t/keys/a", "/t/keys/b/c", "/t/keysx", "/t/other"] {
        store.put(key, b"value".to_vec(), None).await.expect("put");
    }
    assert_eq!(
        store.list_keys("/t/keys/").await.expect("keys"),
        ["/t/keys/a", "/t/keys/b/c"]
    );
    assert!(store.list_keys("/t/none/").await.expect("keys").is_empty());
}
