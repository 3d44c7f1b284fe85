//! The coordinator's network policy operations over the [`Store`]: create (once the policy
//! passes [`policy_check::check`] against the cluster), list, inspect with the counters summed
//! over nodes, and remove; plus what a network's removal takes with it.

use std::collections::BTreeSet;

use shibafu_overlay::api::{ApiError, ErrorKind, PolicyInfo, PolicySpec, RuleCounters};
use shibafu_overlay::model::{
    Action, Endpoint, Network, Object, Peer, Policy, PolicyCounters, Service, SCHEMA_VERSION,
};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, Store, StoreError, StoreExt, TxnOp};
use tracing::{debug, info};

use crate::cluster::{backoff, read_network, store_error, MAX_ATTEMPTS, MAX_TXN_OPS};
use crate::policy_check::{self, Names, Refusal};

/// Name of the guard key every policy creation bumps, so a network removal that listed the
/// policies before a concurrent creation fails its transaction and lists them again.
const POLICIES_GUARD: &str = "policies";

/// Checks and creates a policy. The checks are [`policy_check::check`]'s against the cluster
/// now, bad input refused before a duplicate name, a duplicate before a name not found. It is
/// written in one transaction that requires the policy key absent and the network (and the
/// selected service) unchanged since they were read, so a policy never outlives its network
/// removed concurrently. Peers are checked when it is made only: a peer removed later simply
/// matches nothing.
pub async fn create_policy(store: &dyn Store, spec: &PolicySpec) -> Result<Policy, ApiError> {
    let policy = spec.to_policy();
    let key = policy.key();
    let guard = Key::Guard(POLICIES_GUARD.to_string());
    for attempt in 0..MAX_ATTEMPTS {
        let cluster = Cluster::read(store, &policy).await?;
        let refusals = policy_check::check(&policy, &cluster);
        let refused = |r: &Refusal| ApiError::new(r.kind, r.error.clone());
        if let Some(r) = refusals.iter().find(|r| r.kind == ErrorKind::Invalid) {
            return Err(refused(r));
        }
        if store
            .get(&key.to_string())
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorKind::Duplicate,
                format!(
                    "policy {:?} already exists; remove it first with `shibafu network policy rm {}`",
                    policy.name, policy.name
                ),
            ));
        }
        if let Some(r) = refusals.first() {
            return Err(refused(r));
        }
        let mut compares = vec![Compare::absent(&key)];
        compares.extend(cluster.kept);
        let guard_value = serde_json::json!({"schema": SCHEMA_VERSION, "last": policy.name});
        let ops = vec![
            TxnOp::put_object(&policy, None).map_err(store_error)?,
            TxnOp::Put {
                key: guard.to_string(),
                value: guard_value.to_string().into_bytes(),
                lease: None,
            },
        ];
        if store.txn(compares, ops).await.map_err(store_error)? {
            info!(policy = %policy.name, network = %policy.network, rules = policy.rules.len(), "policy created");
            return Ok(policy);
        }
        debug!(policy = %policy.name, attempt, "create lost to a concurrent change; retrying");
        backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "policy {:?}: too many concurrent changes; try again",
            policy.name
        ),
    ))
}

/// The cluster as a policy creation sees it: the names the policy uses, and the compares that
/// keep its network and selected service as they were read.
struct Cluster {
    networks: BTreeSet<String>,
    /// As (network, name).
    services: BTreeSet<(String, String)>,
    containers: BTreeSet<String>,
    kept: Vec<Compare>,
}

impl Cluster {
    /// Reads the policy's network and service, and lists the kinds of objects its peers name.
    async fn read(store: &dyn Store, policy: &Policy) -> Result<Cluster, ApiError> {
        let wants = |kind: fn(&Peer) -> bool| policy.rules.iter().any(|r| kind(&r.peer));
        let mut networks = if wants(|p| matches!(p, Peer::Network(_))) {
            names::<Network, _>(store, Prefix::Networks, |n| n.name).await?
        } else {
            BTreeSet::new()
        };
        let mut services = if wants(|p| matches!(p, Peer::Service(_))) {
            names::<Service, _>(store, Prefix::Services, |s| (s.network, s.name)).await?
        } else {
            BTreeSet::new()
        };
        let containers = if wants(|p| matches!(p, Peer::Container(_))) {
            names::<Endpoint, _>(store, Prefix::Endpoints, |e| e.name).await?
        } else {
            BTreeSet::new()
        };
        let mut kept = Vec::new();
        match read_network(store, &policy.network).await {
            Ok((_, revision)) => {
                networks.insert(policy.network.clone());
                let key = Key::Network(policy.network.clone());
                kept.push(Compare::mod_revision(&key, revision));
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                networks.remove(&policy.network);
            }
            Err(e) => return Err(e),
        }
        if let Some(service) = &policy.service {
            let key = Key::Service {
                network: policy.network.clone(),
                name: service.clone(),
            };
            let pair = (policy.network.clone(), service.clone());
            match store.get(&key.to_string()).await.map_err(store_error)? {
                Some(kv) => {
                    services.insert(pair);
                    kept.push(Compare::mod_revision(&key, kv.mod_revision));
                }
                None => {
                    services.remove(&pair);
                }
            }
        }
        Ok(Cluster {
            networks,
            services,
            containers,
            kept,
        })
    }
}

impl Names for Cluster {
    fn missing_network(&self, name: &str) -> Option<String> {
        (!self.networks.contains(name))
            .then(|| format!("no network named {name:?}; see `shibafu network ls`"))
    }

    fn has_service(&self, network: Option<&str>, name: &str) -> bool {
        self.services
            .iter()
            .any(|(n, s)| s == name && network.is_none_or(|net| net == n))
    }

    fn has_container(&self, name: &str) -> bool {
        self.containers.contains(name)
    }

    fn looked_in(&self) -> &'static str {
        ""
    }
}

/// What `name` makes of each object under `prefix`.
async fn names<T: Object, N: Ord>(
    store: &dyn Store,
    prefix: Prefix,
    name: fn(T) -> N,
) -> Result<BTreeSet<N>, ApiError> {
    let (objects, _) = store
        .list_objects::<T>(&prefix)
        .await
        .map_err(store_error)?;
    Ok(objects.into_iter().map(name).collect())
}

/// Every policy, sorted by name.
pub async fn list_policies(store: &dyn Store) -> Result<Vec<Policy>, ApiError> {
    let (mut policies, _) = store
        .list_objects::<Policy>(&Prefix::Policies)
        .await
        .map_err(store_error)?;
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(policies)
}

async fn read(store: &dyn Store, name: &str) -> Result<(Policy, i64), ApiError> {
    match store
        .get_object::<Policy>(&Key::Policy(name.to_string()))
        .await
    {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::not_found(format!(
            "no policy named {name:?}; see `shibafu network policy list`"
        ))),
        Err(StoreError::Malformed { reason, .. }) => Err(ApiError::new(
            ErrorKind::Internal,
            format!("policy {name:?} is stored unusable ({reason})"),
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// One policy with its counters summed over the nodes that reported.
pub async fn get_policy(store: &dyn Store, name: &str) -> Result<PolicyInfo, ApiError> {
    let (policy, _) = read(store, name).await?;
    let (counters, _) = store
        .list_objects::<PolicyCounters>(&Prefix::PolicyCountersOf(name.to_string()))
        .await
        .map_err(store_error)?;
    Ok(summed(policy, &counters))
}

/// The policy with the nodes' counters added up, rule by rule. Counters with another number of
/// rules were counted for an older version of the policy and are left out.
fn summed(policy: Policy, counters: &[PolicyCounters]) -> PolicyInfo {
    let mut totals = vec![0u64; policy.rules.len()];
    let mut isolation_dropped = 0u64;
    let mut nodes = Vec::new();
    for c in counters {
        if c.rules.len() != totals.len() {
            debug!(policy = %policy.name, node = %c.node, rules = c.rules.len(), "ignoring counters of another version of the policy");
            continue;
        }
        for (total, n) in totals.iter_mut().zip(&c.rules) {
            *total = total.saturating_add(*n);
        }
        isolation_dropped = isolation_dropped.saturating_add(c.isolation_dropped);
        nodes.push(c.node.clone());
    }
    nodes.sort();
    let rules = policy
        .rules
        .iter()
        .zip(totals)
        .map(|(rule, n)| {
            let (allowed, dropped) = match rule.action {
                Action::Allow => (n, 0),
                Action::Deny => (0, n),
            };
            RuleCounters {
                rule: rule.to_string(),
                allowed,
                dropped,
            }
        })
        .collect();
    PolicyInfo {
        policy,
        rules,
        isolation_dropped,
        nodes,
    }
}

/// Removes a policy and its counters; answers the policy as it was.
pub async fn remove_policy(store: &dyn Store, name: &str) -> Result<Policy, ApiError> {
    let (policy, revision) = read(store, name).await?;
    let key = policy.key();
    let (counters, _) = store
        .list(&Prefix::PolicyCountersOf(name.to_string()).to_string())
        .await
        .map_err(store_error)?;
    let mut ops = vec![TxnOp::delete(&key)];
    ops.extend(counters.into_iter().map(|kv| TxnOp::Delete(kv.key)));
    // The policy and its first counters go at once; counters beyond one transaction follow.
    let (first, rest) = ops.split_at(ops.len().min(MAX_TXN_OPS));
    let unchanged = vec![Compare::mod_revision(&key, revision)];
    if !store
        .txn(unchanged, first.to_vec())
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("policy {name:?} was removed or replaced meanwhile; see `shibafu network policy list`"),
        ));
    }
    for chunk in rest.chunks(MAX_TXN_OPS) {
        store
            .txn(Vec::new(), chunk.to_vec())
            .await
            .map_err(store_error)?;
    }
    info!(policy = name, "policy removed");
    Ok(policy)
}

/// The policies selecting a network, to remove with it.
pub struct OfNetwork {
    /// The policies guard as read before listing them: a policy made since fails the removal.
    pub guard: Compare,
    /// The policies' keys and their counters' keys.
    pub keys: Vec<String>,
    /// How many policies.
    pub policies: usize,
}

/// The policies whose network is `network`, with their counters. Policies that only name it
/// as a peer stay (they match nothing while it is gone).
pub async fn of_network(store: &dyn Store, network: &str) -> Result<OfNetwork, ApiError> {
    let guard = Key::Guard(POLICIES_GUARD.to_string());
    let guard = match store.get(&guard.to_string()).await.map_err(store_error)? {
        Some(kv) => Compare::mod_revision(&guard, kv.mod_revision),
        None => Compare::absent(&guard),
    };
    let selecting: Vec<Policy> = list_policies(store)
        .await?
        .into_iter()
        .filter(|p| p.network == network)
        .collect();
    let mut keys = Vec::new();
    for p in &selecting {
        keys.push(p.key().to_string());
        let (counters, _) = store
            .list(&Prefix::PolicyCountersOf(p.name.clone()).to_string())
            .await
            .map_err(store_error)?;
        keys.extend(counters.into_iter().map(|kv| kv.key));
    }
    Ok(OfNetwork {
        guard,
        keys,
        policies: selecting.len(),
    })
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
