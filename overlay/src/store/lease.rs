//! Keys held under a lease: grant a lease and write the keys under it, keep it alive, grant a
//! new one and write them again when etcd lost it, revoke it to remove them at once.
//!
//! The steps are plain async functions over the [`Store`] trait (an actor can spawn them and
//! take their results as messages); [`hold`] strings them into one loop for a process that
//! owns a few keys for its lifetime (a coordinator's record).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{Store, StoreError, TxnOp};

/// Most operations per transaction (etcd's default limit is 128).
const TXN_CHUNK: usize = 100;
/// Upper bound of one store call: longer than the etcd store's own per-call timeout (5 s), so
/// its clean-up runs first; this only catches a store that hangs without timing out itself.
const STORE_CALL_LIMIT: Duration = Duration::from_secs(6);

/// Keys held under one lease, by full key, with their values.
pub type Owned = BTreeMap<String, Vec<u8>>;

/// Bounds a store call by `limit` (a partitioned etcd can leave calls hanging).
pub async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer within {limit:?}"
        )))
    })
}

/// Grants a lease of `ttl_secs` and writes every owned key under it, in transactions.
/// Returns the lease. On failure after the grant, revokes the lease again when it can.
pub async fn register(
    store: Arc<dyn Store>,
    ttl_secs: i64,
    owned: Owned,
    limit: Duration,
) -> Result<i64, StoreError> {
    let lease = bounded(limit, store.grant_lease(ttl_secs)).await?;
    if let Err(e) = put_all(&store, lease, &owned, limit).await {
        let _ = bounded(limit, store.revoke_lease(lease)).await;
        return Err(e);
    }
    Ok(lease)
}

/// Writes `owned` under `lease`.
pub async fn put_all(
    store: &Arc<dyn Store>,
    lease: i64,
    owned: &Owned,
    limit: Duration,
) -> Result<(), StoreError> {
    let ops: Vec<TxnOp> = owned
        .iter()
        .map(|(k, v)| TxnOp::Put {
            key: k.clone(),
            value: v.clone(),
            lease: Some(lease),
        })
        .collect();
    for chunk in ops.chunks(TXN_CHUNK) {
        bounded(limit, store.txn(Vec::new(), chunk.to_vec())).await?;
    }
    Ok(())
}

/// Deletes keys (no longer owned) in transactions.
pub async fn delete_all(
    store: &Arc<dyn Store>,
    keys: Vec<String>,
    limit: Duration,
) -> Result<(), StoreError> {
    let ops: Vec<TxnOp> = keys.into_iter().map(TxnOp::Delete).collect();
    for chunk in ops.chunks(TXN_CHUNK) {
        bounded(limit, store.txn(Vec::new(), chunk.to_vec())).await?;
    }
    Ok(())
}

/// Do the keys still hold `owned` under `lease`? (After an outage etcd may come back from an
/// older copy without them.)
async fn still_held(
    store: &Arc<dyn Store>,
    lease: i64,
    owned: &Owned,
    limit: Duration,
) -> Result<bool, StoreError> {
    for (key, value) in owned {
        match bounded(limit, store.get(key)).await? {
            Some(kv) if kv.lease == lease && &kv.value == value => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Holds `owned` under a lease of `ttl` until `stop` completes, then revokes the lease (the
/// keys go at once). The lease is refreshed every third of `ttl`; when etcd has lost it (expired
/// while etcd was away, or etcd restarted without it) a new one is granted and the keys are
/// written again, and after an outage keys found missing are rewritten. Failures are logged and
/// retried, never returned.
pub async fn hold(
    store: Arc<dyn Store>,
    owned: Owned,
    ttl: Duration,
    stop: impl Future<Output = ()>,
) {
    let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let every = (ttl / 3).max(Duration::from_millis(100));
    let limit = ttl.max(STORE_CALL_LIMIT);
    let keys: Vec<&str> = owned.keys().map(String::as_str).collect();
    let mut lease: Option<i64> = None;
    let mut reachable = true;
    tokio::pin!(stop);
    loop {
        let step = async {
            match lease {
                None => register(store.clone(), ttl_secs, owned.clone(), limit)
                    .await
                    .map(|l| {
                        info!(lease = %format_args!("{l:x}"), ?keys, "keys registered under a lease");
                        Some(l)
                    }),
                Some(l) => match bounded(limit, store.keep_alive(l)).await {
                    Ok(_) if reachable => Ok(Some(l)),
                    Ok(_) => {
                        if !still_held(&store, l, &owned, limit).await? {
                            warn!(?keys, "keys missing after an outage; writing them again");
                            put_all(&store, l, &owned, limit).await?;
                        }
                        Ok(Some(l))
                    }
                    Err(StoreError::LeaseNotFound(_)) => {
                        warn!(?keys, "lease lost: etcd dropped it; registering again");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                },
            }
        };
        let result = tokio::select! {
            r = step => r,
            () = &mut stop => break,
        };
        match result {
            Ok(next) => {
                if !reachable {
                    info!(?keys, "etcd reachable again");
                }
                reachable = true;
                if next.is_none() {
                    lease = None;
                    continue;
                }
                lease = next;
            }
            Err(e) => {
                if reachable {
                    warn!(error = %e, ?keys, "cannot keep the keys' lease; retrying");
                }
                reachable = false;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut stop => break,
        }
    }
    if let Some(l) = lease {
        match bounded(limit, store.revoke_lease(l)).await {
            Ok(()) => info!(?keys, "lease revoked: keys removed"),
            Err(e) => {
                warn!(error = %e, ?keys, "cannot revoke the lease; the keys go when it expires")
            }
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
