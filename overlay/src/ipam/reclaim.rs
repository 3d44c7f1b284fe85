//! Blocks of dead nodes given back: what the coordinators' GC runs every few seconds, so it
//! reads the endpoints only of the networks where a block's owner is gone, and none while
//! every owner is live (the common pass), not every endpoint of the cluster each time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use tracing::info;

use super::IpamError;
use crate::model::{decode, Endpoint, IpamBlock};
use crate::store::keys::{Key, Prefix};
use crate::store::{Compare, KeyValue, Store, TxnOp};

/// Deletes IPAM blocks whose owner is not in `live_nodes` and which no endpoint uses; returns
/// them. Pass the nodes registered now plus those gone for less than a grace period, so a node
/// that is only briefly cut off keeps its blocks. Safe to run on several coordinators at once.
pub async fn reclaim_dead_blocks(
    store: &dyn Store,
    live_nodes: &[String],
) -> Result<Vec<IpamBlock>, IpamError> {
    let live: HashSet<&str> = live_nodes.iter().map(String::as_str).collect();
    let (blocks, _) = store.list(&Prefix::Blocks.to_string()).await?;
    let orphans = orphaned(&blocks, &live);
    // Endpoints are read after the blocks: one written since is seen, never missed.
    let mut in_use: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    let mut unreadable: HashSet<String> = HashSet::new();
    for network in networks_of(&orphans) {
        let prefix = Prefix::EndpointsOf(network.clone()).to_string();
        let (endpoints, _) = store.list(&prefix).await?;
        for kv in &endpoints {
            let Some(Key::Endpoint { .. }) = Key::parse(&kv.key) else {
                continue;
            };
            match decode::<Endpoint>(&kv.key, &kv.value) {
                Ok(e) => in_use.entry(network.clone()).or_default().push(e.ipv4),
                // An endpoint we cannot read might use any block of its network: keep them all.
                Err(_) => {
                    unreadable.insert(network.clone());
                }
            }
        }
    }
    let mut reclaimed = Vec::new();
    for (kv, block) in orphans {
        let used = in_use
            .get(&block.network)
            .is_some_and(|ips| ips.iter().any(|ip| block.cidr.contains(ip)));
        if used || unreadable.contains(&block.network) {
            continue;
        }
        let cmp = Compare::ModRevision(kv.key.clone(), kv.mod_revision);
        if store
            .txn(vec![cmp], vec![TxnOp::Delete(kv.key.clone())])
            .await?
        {
            info!(network = %block.network, block = %block.cidr, owner = %block.node, "reclaimed block of dead node");
            reclaimed.push(block);
        }
    }
    Ok(reclaimed)
}

/// The readable blocks whose owner is not live, with their keys.
fn orphaned<'a>(blocks: &'a [KeyValue], live: &HashSet<&str>) -> Vec<(&'a KeyValue, IpamBlock)> {
    blocks
        .iter()
        .filter_map(|kv| {
            decode::<IpamBlock>(&kv.key, &kv.value)
                .ok()
                .map(|b| (kv, b))
        })
        .filter(|(_, b)| !live.contains(b.node.as_str()))
        .collect()
}

/// The networks of `orphans`, each once: those whose endpoints must be read.
fn networks_of(orphans: &[(&KeyValue, IpamBlock)]) -> BTreeSet<String> {
    orphans.iter().map(|(_, b)| b.network.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(network: &str, cidr: &str, node: &str) -> KeyValue {
        let b = IpamBlock {
            schema: crate::model::SCHEMA_VERSION,
            network: network.into(),
            cidr: cidr.parse().expect("cidr"),
            node: node.into(),
        };
        KeyValue {
            key: Key::IpamBlock {
                network: network.into(),
                cidr: cidr.into(),
            }
            .to_string(),
            value: serde_json::to_vec(&b).expect("json"),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn endpoints_are_read_only_for_networks_with_a_dead_owner() {
        let blocks = [
            block("f", "10.1.0.0/26", "n1"),
            block("f", "10.1.0.64/26", "n2"),
            block("g", "10.2.0.0/26", "n1"),
            block("h", "10.3.0.0/26", "n3"),
            KeyValue {
                value: b"not json".to_vec(),
                ..block("h", "10.3.0.64/26", "n9")
            },
        ];
        let all: HashSet<&str> = ["n1", "n2", "n3"].into();
        assert!(orphaned(&blocks, &all).is_empty(), "every owner live");
        assert!(networks_of(&orphaned(&blocks, &all)).is_empty());
        let without_n2: HashSet<&str> = ["n1", "n3"].into();
        let orphans = orphaned(&blocks, &without_n2);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].1.cidr.to_string(), "10.1.0.64/26");
        assert_eq!(networks_of(&orphans), BTreeSet::from(["f".to_string()]));
        let none: HashSet<&str> = HashSet::new();
        let names: Vec<String> = networks_of(&orphaned(&blocks, &none)).into_iter().collect();
        assert_eq!(
            names,
            ["f", "g", "h"],
            "an unreadable block is never a candidate"
        );
    }
}
