//! Periodic garbage collection of cluster state: IPAM blocks of dead nodes, and keys left behind
//! by networks that no longer exist (endpoints, health, IPAM blocks, links). Safe to run on
//! several coordinators at once: every delete is conditional on what justified it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shibafu_overlay::api::ApiError;
use shibafu_overlay::ipam::reclaim_dead_blocks;
use shibafu_overlay::model::IpamBlock;
use shibafu_overlay::store::every::Every;
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, Store, StoreExt, TxnOp};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cluster::{self, store_error, MAX_TXN_OPS};

/// Runs a GC pass every `interval` until `stop` turns true. Blocks of a node are reclaimed once
/// it has been unregistered for `grace` (as seen by this coordinator).
pub async fn run(
    store: Arc<dyn Store>,
    interval: Duration,
    grace: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut every = Every::new(interval, stop);
    let mut gc = Collector::new(grace);
    while every.next().await {
        if let Err(e) = gc.pass(store.as_ref(), Instant::now()).await {
            warn!(error = %e, "gc pass failed; retrying next interval");
        }
    }
}

/// GC state: since when each block owner has been missing from the registered nodes. Only
/// this soft memory lives in the coordinator; after a restart the grace period starts over.
#[derive(Debug)]
pub struct Collector {
    grace: Duration,
    missing_since: HashMap<String, Instant>,
}

impl Collector {
    /// A collector with the given grace period for dead nodes.
    pub fn new(grace: Duration) -> Collector {
        Collector {
            grace,
            missing_since: HashMap::new(),
        }
    }

    /// One GC pass at time `now`.
    pub async fn pass(&mut self, store: &dyn Store, now: Instant) -> Result<(), ApiError> {
        let registered = cluster::list_nodes(store, 0).await?;
        let registered: Vec<String> = registered.into_iter().map(|n| n.name).collect();
        let (blocks, _) = store
            .list_objects::<IpamBlock>(&Prefix::Blocks)
            .await
            .map_err(store_error)?;
        let owners: BTreeSet<String> = blocks.into_iter().map(|b| b.node).collect();
        let live = self.live_nodes(&registered, &owners, now);
        match reclaim_dead_blocks(store, &live).await {
            Ok(reclaimed) if !reclaimed.is_empty() => {
                info!(
                    blocks = reclaimed.len(),
                    "gc reclaimed blocks of dead nodes"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "gc could not reclaim blocks"),
        }
        let swept = sweep_orphans(store).await?;
        if swept > 0 {
            info!(keys = swept, "gc removed keys of deleted networks");
        }
        Ok(())
    }

    /// Registered nodes plus block owners missing for less than the grace period.
    pub fn live_nodes(
        &mut self,
        registered: &[String],
        owners: &BTreeSet<String>,
        now: Instant,
    ) -> Vec<String> {
        let registered_set: BTreeSet<&String> = registered.iter().collect();
        self.missing_since
            .retain(|n, _| owners.contains(n) && !registered_set.contains(n));
        let mut live: Vec<String> = registered.to_vec();
        for owner in owners.iter().filter(|o| !registered_set.contains(o)) {
            let since = *self.missing_since.entry(owner.clone()).or_insert(now);
            if now.duration_since(since) < self.grace {
                live.push(owner.clone());
            } else {
                debug!(node = %owner, "node gone past the grace period; its blocks may go");
            }
        }
        live
    }
}

/// Network a child key belongs to (links belong to both of their networks).
fn owners(key: &Key) -> Vec<&str> {
    match key {
        Key::Endpoint { network, .. }
        | Key::Health { network, .. }
        | Key::IpamBlock { network, .. }
        | Key::Problem { network, .. } => vec![network.as_str()],
        Key::Link(a, b) => vec![a.as_str(), b.as_str()],
        _ => Vec::new(),
    }
}

/// Deletes every child key whose network does not exist; returns how many went.
pub async fn sweep_orphans(store: &dyn Store) -> Result<usize, ApiError> {
    // Children are listed before networks: a child written after this list is not looked at,
    // and the network it was written for (which existed then) appears in the later list.
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for prefix in [
        Prefix::Endpoints,
        Prefix::Health,
        Prefix::Blocks,
        Prefix::Links,
        Prefix::Problems,
    ] {
        // Names only: every pass reads every child key of the cluster, not their values.
        let keys = store
            .list_keys(&prefix.to_string())
            .await
            .map_err(store_error)?;
        for name in keys {
            let Some(key) = Key::parse(&name) else {
                continue;
            };
            for net in owners(&key) {
                children
                    .entry(net.to_string())
                    .or_default()
                    .insert(name.clone());
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
        let absent = Compare::absent(&Key::Network(net.clone()));
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
        let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
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
        let task = tokio::spawn(run(
            store,
            Duration::from_millis(10),
            Duration::from_secs(60),
            rx,
        ));
        tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("gc stops")
            .expect("join");
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dead_owners_stay_live_for_the_grace_period() {
        let mut c = Collector::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let owners: BTreeSet<String> = names(&["node1", "node2"]).into_iter().collect();
        let registered = names(&["node1"]);
        assert_eq!(c.live_nodes(&registered, &owners, t0), ["node1", "node2"]);
        let t1 = t0 + Duration::from_secs(29);
        assert_eq!(c.live_nodes(&registered, &owners, t1), ["node1", "node2"]);
        let t2 = t0 + Duration::from_secs(30);
        assert_eq!(c.live_nodes(&registered, &owners, t2), ["node1"]);
        // node2 comes back: its clock resets; when it goes again the grace starts over.
        let both = names(&["node1", "node2"]);
        assert_eq!(c.live_nodes(&both, &owners, t2), ["node1", "node2"]);
        let t3 = t2 + Duration::from_secs(5);
        assert_eq!(c.live_nodes(&registered, &owners, t3), ["node1", "node2"]);
    }

    async fn put_block(store: &MemoryStore, net: &str, cidr: &str, node: &str) {
        let block = IpamBlock {
            schema: 1,
            network: net.into(),
            cidr: cidr.parse().expect("cidr"),
            node: node.into(),
        };
        let key = Key::IpamBlock {
            network: net.into(),
            cidr: cidr.into(),
        };
        store
            .put(
                &key.to_string(),
                serde_json::to_vec(&block).expect("json"),
                None,
            )
            .await
            .expect("put");
    }

    #[tokio::test]
    async fn pass_reclaims_blocks_of_dead_nodes_after_grace() {
        let store = MemoryStore::new();
        let req = CreateNetwork {
            name: "net".into(),
            subnet: "10.1.0.0/24".into(),
            ..CreateNetwork::default()
        };
        cluster::create_network(&store, &req).await.expect("create");
        put_block(&store, "net", "10.1.0.0/28", "dead").await;
        let block_key = Key::IpamBlock {
            network: "net".into(),
            cidr: "10.1.0.0/28".into(),
        }
        .to_string();
        let mut c = Collector::new(Duration::from_secs(30));
        let t0 = Instant::now();
        c.pass(&store, t0).await.expect("pass");
        assert!(
            store.get(&block_key).await.expect("get").is_some(),
            "reclaimed inside grace"
        );
        c.pass(&store, t0 + Duration::from_secs(31))
            .await
            .expect("pass");
        assert!(
            store.get(&block_key).await.expect("get").is_none(),
            "not reclaimed after grace"
        );
    }
}
