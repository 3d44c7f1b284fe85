//! Periodic garbage collection of cluster state: keys left behind by networks that no longer
//! exist (endpoints, health, IPAM blocks, links). Safe to run on several coordinators at once:
//! every delete is conditional on the network still being absent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shibafu_overlay::api::ApiError;
use shibafu_overlay::store::keys::{Key, ROOT};
use shibafu_overlay::store::{Compare, Store, TxnOp};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cluster::{self, store_error, MAX_TXN_OPS};

/// Runs a GC pass every `interval` until `stop` turns true.
pub async fn run(store: Arc<dyn Store>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = pass(store.as_ref()).await {
            warn!(error = %e, "gc pass failed; retrying next interval");
        }
    }
}

/// One GC pass.
pub async fn pass(store: &dyn Store) -> Result<(), ApiError> {
    let swept = sweep_orphans(store).await?;
    if swept > 0 {
        info!(keys = swept, "gc removed keys of deleted networks");
    }
    Ok(())
}

/// Network a child key belongs to (links belong to both of their networks).
fn owners(key: &Key) -> Vec<&str> {
    match key {
        Key::Endpoint { network, .. }
        | Key::Health { network, .. }
        | Key::IpamBlock { network, .. } => vec![network.as_str()],
        Key::Link(a, b) => vec![a.as_str(), b.as_str()],
        _ => Vec::new(),
    }
}

/// Deletes every child key whose network does not exist; returns how many went.
pub async fn sweep_orphans(store: &dyn Store) -> Result<usize, ApiError> {
    // Children are listed before networks: a child written after this list is not looked at,
    // and the network it was written for (which existed then) appears in the later list.
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for kind in ["endpoints/", "health/", "ipam/", "links/"] {
        let (kvs, _) = store
            .list(&format!("{ROOT}{kind}"))
            .await
            .map_err(store_error)?;
        for kv in kvs {
            let Some(key) = Key::parse(&kv.key) else {
                continue;
            };
            for net in owners(&key) {
                children
                    .entry(net.to_string())
                    .or_default()
                    .insert(kv.key.clone());
            }
        }
    }
    let live: BTreeSet<String> = cluster::list_networks(store)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let mut swept = 0;
    for (net, keys) in children {
        if live.contains(&net) {
            continue;
        }
        let absent = Compare::Absent(Key::Network(net.clone()).to_string());
        let keys: Vec<String> = keys.into_iter().collect();
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let ops = chunk.iter().cloned().map(TxnOp::Delete).collect();
            if store
                .txn(vec![absent.clone()], ops)
                .await
                .map_err(store_error)?
            {
                swept += chunk.len();
            } else {
                debug!(network = %net, "network reappeared; keeping its keys");
                break;
            }
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::api::CreateNetwork;
    use shibafu_overlay::store::MemoryStore;

    use super::*;

    async fn keys(store: &MemoryStore) -> Vec<String> {
        let (kvs, _) = store.list(ROOT).await.expect("list");
        kvs.into_iter().map(|kv| kv.key).collect()
    }

    #[tokio::test]
    async fn sweeps_only_keys_of_missing_networks() {
        let store = MemoryStore::new();
        let req = CreateNetwork {
            name: "live".into(),
            subnet: "10.1.0.0/24".into(),
            ..CreateNetwork::default()
        };
        cluster::create_network(&store, &req).await.expect("create");
        let orphan = [
            Key::Endpoint {
                network: "gone".into(),
                id: "n1-a".into(),
            },
            Key::Health {
                network: "gone".into(),
                id: "n1-a".into(),
            },
            Key::IpamBlock {
                network: "gone".into(),
                cidr: "10.2.0.0/28".into(),
            },
            Key::Link("gone".into(), "live".into()),
        ];
        let kept = [
            Key::Endpoint {
                network: "live".into(),
                id: "n1-b".into(),
            },
            Key::IpamBlock {
                network: "live".into(),
                cidr: "10.1.0.0/28".into(),
            },
            Key::Node("n1".into()),
        ];
        for k in orphan.iter().chain(&kept) {
            store
                .put(&k.to_string(), b"{}".to_vec(), None)
                .await
                .expect("put");
        }
        assert_eq!(sweep_orphans(&store).await.expect("sweep"), orphan.len());
        let left = keys(&store).await;
        for k in &orphan {
            assert!(!left.contains(&k.to_string()), "{k} survived");
        }
        for k in &kept {
            assert!(left.contains(&k.to_string()), "{k} was removed");
        }
        assert_eq!(sweep_orphans(&store).await.expect("again"), 0);
    }

    #[tokio::test]
    async fn run_stops_when_told() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(store, Duration::from_millis(10), rx));
        tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("gc stops")
            .expect("join");
    }
}
