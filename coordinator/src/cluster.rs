//! The coordinator's operations on cluster state, over the [`Store`] trait: create, list,
//! inspect and remove networks, list nodes. Stateless: several coordinators may run against one
//! etcd; concurrent writers are serialised by transactions, never by memory.

use std::time::Duration;

use shibafu_overlay::api::{ApiError, CreateNetwork, ErrorKind, NodeInfo, RemovedNetwork};
use shibafu_overlay::model::{
    decode, Endpoint, Network, NetworkProblem, Node, TunnelStatus, SCHEMA_VERSION,
};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, KeyValue, Store, StoreError, StoreExt, TxnOp};
use tracing::{debug, info, warn};

use crate::links::LINKS_GUARD;
use crate::{policies, validate};

/// Attempts of a transaction that keeps losing to concurrent changes.
pub const MAX_ATTEMPTS: u32 = 16;
/// Operations per etcd transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// Name of the guard key every network creation bumps.
pub(crate) const NETWORKS_GUARD: &str = "networks";
/// Attached endpoints named in a "has endpoints" message.
const NAMED_ENDPOINTS: usize = 5;

/// Maps a store failure to an API error (503 when etcd is out of reach).
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(reason) => ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "cluster store unavailable: {reason} (is etcd running and reachable from the coordinator? check --etcd)"
            ),
        ),
        other => ApiError::new(ErrorKind::Internal, format!("cluster store error: {other}")),
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot encode value: {e}")))
}

/// Waits a little longer after each lost transaction.
pub async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt + 1))).await;
}

/// Every network, sorted by name.
pub async fn list_networks(store: &dyn Store) -> Result<Vec<Network>, ApiError> {
    let (mut nets, _) = store
        .list_objects::<Network>(&Prefix::Networks)
        .await
        .map_err(store_error)?;
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nets)
}

/// One network with the mod revision of its key; `not_found` when there is none.
pub async fn read_network(store: &dyn Store, name: &str) -> Result<(Network, i64), ApiError> {
    let key = Key::Network(name.to_string());
    match store.get_object::<Network>(&key).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::not_found(format!("no network named {name:?}"))),
        Err(StoreError::Malformed { reason, .. }) => {
            warn!(key = %key, %reason, "unusable network value");
            Err(ApiError::new(
                ErrorKind::Internal,
                format!("network {name:?} is stored unusable ({reason}); remove it with --force"),
            ))
        }
        Err(e) => Err(store_error(e)),
    }
}

/// One network by name.
pub async fn get_network(store: &dyn Store, name: &str) -> Result<Network, ApiError> {
    read_network(store, name).await.map(|(n, _)| n)
}

/// Why nodes skip network `name`, by node; `not_found` when there is no such network.
pub async fn network_problems(
    store: &dyn Store,
    name: &str,
) -> Result<Vec<NetworkProblem>, ApiError> {
    get_network(store, name).await?;
    let (mut problems, _) = store
        .list_objects::<NetworkProblem>(&Prefix::ProblemsOf(name.to_string()))
        .await
        .map_err(store_error)?;
    problems.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(problems)
}

/// Validates and creates a network, allocating its VNI. Two concurrent creations cannot both
/// win: each compares the networks guard key and bumps it in the same transaction.
pub async fn create_network(store: &dyn Store, req: &CreateNetwork) -> Result<Network, ApiError> {
    let mut network = validate::network_from_request(req)?;
    if network.encrypted {
        require_keys(store).await?;
    }
    let guard = Key::Guard(NETWORKS_GUARD.to_string()).to_string();
    let key = Key::Network(network.name.clone()).to_string();
    for attempt in 0..MAX_ATTEMPTS {
        // Read the guard first: any creation committed after this read fails our compare.
        let guard_cmp = match store.get(&guard).await.map_err(store_error)? {
            Some(kv) => Compare::ModRevision(guard.clone(), kv.mod_revision),
            None => Compare::Absent(guard.clone()),
        };
        let existing = list_networks(store).await?;
        validate::check_conflicts(&network, &existing)?;
        network.vni = validate::free_vni(&existing)?;
        let guard_value = encode(&serde_json::json!({
            "schema": SCHEMA_VERSION,
            "last": network.name,
        }))?;
        let ops = vec![
            TxnOp::Put {
                key: guard.clone(),
                value: guard_value,
                lease: None,
            },
            TxnOp::Put {
                key: key.clone(),
                value: shibafu_overlay::model::encode(&network).map_err(|e| {
                    ApiError::new(ErrorKind::Internal, format!("cannot encode value: {e}"))
                })?,
                lease: None,
            },
        ];
        let compares = vec![guard_cmp, Compare::Absent(key.clone())];
        if store.txn(compares, ops).await.map_err(store_error)? {
            info!(network = %network.name, subnet = %network.subnet, vni = network.vni, "network created");
            return Ok(network);
        }
        debug!(network = %network.name, attempt, "create lost to a concurrent change; retrying");
        backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "network {:?}: too many concurrent network changes; try again",
            network.name
        ),
    ))
}

/// Removes a network. Refuses while endpoints are attached unless `force`, which also removes
/// them. The network's IPAM blocks, health entries, links and the policies selecting it (with
/// their counters) go with it.
pub async fn remove_network(
    store: &dyn Store,
    name: &str,
    force: bool,
) -> Result<RemovedNetwork, ApiError> {
    for attempt in 0..MAX_ATTEMPTS {
        let plan = plan_removal(store, name, force).await?;
        let total = plan.ops.len();
        let compare = vec![
            Compare::ModRevision(plan.key.clone(), plan.revision),
            plan.links_guard.clone(),
            plan.policies_guard.clone(),
        ];
        if total <= MAX_TXN_OPS {
            if store.txn(compare, plan.ops).await.map_err(store_error)? {
                info!(network = %name, force, ops = total, "network removed");
                return Ok(plan.removed);
            }
        } else {
            // Too many keys for one transaction: remove the network itself atomically first
            // (agents tear down on that), then its leftovers in batches.
            let first = vec![TxnOp::Delete(plan.key.clone())];
            if store.txn(compare, first).await.map_err(store_error)? {
                for chunk in plan.ops[1..].chunks(MAX_TXN_OPS) {
                    store
                        .txn(Vec::new(), chunk.to_vec())
                        .await
                        .map_err(store_error)?;
                }
                info!(network = %name, force, ops = total, "network removed in batches");
                return Ok(plan.removed);
            }
        }
        debug!(network = %name, attempt, "remove lost to a concurrent change; retrying");
        backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!("network {name:?}: too many concurrent changes; try again"),
    ))
}

/// What removing one network deletes; the network key comes first.
pub(crate) struct Removal {
    /// The network's key.
    pub(crate) key: String,
    /// Its mod revision as read.
    pub(crate) revision: i64,
    /// The links guard as read before listing the links: a link made since fails the removal.
    pub(crate) links_guard: Compare,
    /// The policies guard as read before listing the policies: likewise for a new policy.
    pub(crate) policies_guard: Compare,
    /// Every delete, the network's first.
    pub(crate) ops: Vec<TxnOp>,
    /// What goes with the network.
    pub(crate) removed: RemovedNetwork,
}

/// Reads what removing network `name` deletes; refused while endpoints are attached unless
/// `force`.
pub(crate) async fn plan_removal(
    store: &dyn Store,
    name: &str,
    force: bool,
) -> Result<Removal, ApiError> {
    let key = Key::Network(name.to_string()).to_string();
    let revision = if force {
        // Only the revision is needed: a network stored unusable can still be forced out.
        match store.get(&key).await.map_err(store_error)? {
            Some(kv) => kv.mod_revision,
            None => return Err(ApiError::not_found(format!("no network named {name:?}"))),
        }
    } else {
        read_network(store, name).await?.1
    };
    let list =
        |prefix: Prefix| async move { store.list(&prefix.to_string()).await.map_err(store_error) };
    let (endpoints, _) = list(Prefix::EndpointsOf(name.to_string())).await?;
    if !endpoints.is_empty() && !force {
        return Err(has_endpoints(name, &endpoints));
    }
    let (health, _) = list(Prefix::HealthOf(name.to_string())).await?;
    let (blocks, _) = list(Prefix::BlocksOf(name.to_string())).await?;
    let (problems, _) = list(Prefix::ProblemsOf(name.to_string())).await?;
    let guard = Key::Guard(LINKS_GUARD.to_string()).to_string();
    let links_guard = match store.get(&guard).await.map_err(store_error)? {
        Some(kv) => Compare::ModRevision(guard, kv.mod_revision),
        None => Compare::Absent(guard),
    };
    let (links, _) = list(Prefix::Links).await?;
    let links: Vec<KeyValue> = links
        .into_iter()
        .filter(|kv| matches!(Key::parse(&kv.key), Some(Key::Link(a, b)) if a == name || b == name))
        .collect();
    let policies = policies::of_network(store, name).await?;
    let mut ops = vec![TxnOp::Delete(key.clone())];
    ops.extend(policies.keys.into_iter().map(TxnOp::Delete));
    for kv in endpoints
        .iter()
        .chain(&health)
        .chain(&blocks)
        .chain(&links)
        .chain(&problems)
    {
        ops.push(TxnOp::Delete(kv.key.clone()));
    }
    Ok(Removal {
        key,
        revision,
        links_guard,
        policies_guard: policies.guard,
        ops,
        removed: RemovedNetwork {
            name: name.to_string(),
            endpoints: endpoints.len(),
            ipam_blocks: blocks.len(),
            links: links.len(),
            policies: policies.policies,
        },
    })
}

fn has_endpoints(name: &str, endpoints: &[KeyValue]) -> ApiError {
    let decoded: Vec<Endpoint> = endpoints
        .iter()
        .filter_map(|kv| decode(&kv.key, &kv.value).ok())
        .collect();
    let mut names: Vec<String> = decoded
        .iter()
        .take(NAMED_ENDPOINTS)
        .map(|e| format!("{} on {}", e.name, e.node))
        .collect();
    if endpoints.len() > names.len() {
        names.push(format!("{} more", endpoints.len() - names.len()));
    }
    let count = endpoints.len();
    let plural = if count == 1 { "" } else { "s" };
    ApiError::new(
        ErrorKind::HasEndpoints,
        format!(
            "network {name:?} has {count} endpoint{plural} attached ({}): detach them first, or remove with --force",
            names.join(", ")
        ),
    )
}

/// Every registered (live) node, sorted by name; ages by unix time `now`.
pub async fn list_nodes(store: &dyn Store, now: u64) -> Result<Vec<NodeInfo>, ApiError> {
    let (nodes, _) = store
        .list_objects::<Node>(&Prefix::Nodes)
        .await
        .map_err(store_error)?;
    let (tunnels, _) = store
        .list_objects::<TunnelStatus>(&Prefix::Tunnels)
        .await
        .map_err(store_error)?;
    let mut infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| {
            let status = tunnels.iter().find(|t| t.node == n.name);
            NodeInfo::from_node(n, status, now)
        })
        .collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// An encrypted network needs every live node to take part in the tunnels: an agent without a
/// WireGuard key (one older than encryption) would carry the network's traffic in clear.
pub async fn require_keys(store: &dyn Store) -> Result<(), ApiError> {
    let (nodes, _) = store
        .list_objects::<Node>(&Prefix::Nodes)
        .await
        .map_err(store_error)?;
    let old: Vec<&str> = nodes
        .iter()
        .filter(|n| n.wg.is_none())
        .map(|n| n.name.as_str())
        .collect();
    if old.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "nodes {} run agents without WireGuard keys (older than encryption): they would carry an encrypted network in clear; upgrade them first",
            old.join(", ")
        ),
    ))
}

/// Checks that the store answers.
pub async fn check_store(store: &dyn Store) -> Result<(), ApiError> {
    let guard = Key::Guard(NETWORKS_GUARD.to_string()).to_string();
    store.get(&guard).await.map_err(store_error).map(|_| ())
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
