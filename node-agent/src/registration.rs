//! The I/O of node membership: grant a lease and write every key the node owns under it, keep
//! the lease alive, revoke it. Plain async functions over the `Store` trait; the StoreActor
//! spawns them and receives their results as messages.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shibafu_overlay::store::{Store, StoreError, TxnOp};

/// Most operations per transaction (etcd's default limit is 128).
const TXN_CHUNK: usize = 100;

/// Keys this node owns, by full key, with their values.
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

#[cfg(test)]
mod tests {
    use super::*;
    use shibafu_overlay::store::MemoryStore;

    const LIMIT: Duration = Duration::from_secs(2);

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn register_writes_owned_keys_under_one_lease() {
        rt().block_on(async {
            let mem = Arc::new(MemoryStore::new());
            let store: Arc<dyn Store> = mem.clone();
            let owned: Owned = (0..250)
                .map(|i| (format!("/shibafu/v1/k/{i}"), b"{}".to_vec()))
                .collect();
            let lease = register(store.clone(), 5, owned, LIMIT)
                .await
                .expect("register");
            let (kvs, _) = store.list("/shibafu/v1/k/").await.expect("list");
            assert_eq!(kvs.len(), 250);
            assert!(kvs.iter().all(|kv| kv.lease == lease));
            assert!(mem.expire_lease(lease));
            let (kvs, _) = store.list("/shibafu/v1/k/").await.expect("list");
            assert!(kvs.is_empty(), "lease expiry removes owned keys");
        });
    }

    #[test]
    fn register_fails_cleanly_when_the_store_is_down() {
        rt().block_on(async {
            let mem = Arc::new(MemoryStore::new());
            mem.set_available(false);
            let store: Arc<dyn Store> = mem.clone();
            let owned: Owned = [("/shibafu/v1/x".to_string(), b"1".to_vec())].into();
            assert!(matches!(
                register(store, 5, owned, LIMIT).await,
                Err(StoreError::Unavailable(_))
            ));
        });
    }

    #[test]
    fn delete_all_removes_keys() {
        rt().block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            store
                .put("/shibafu/v1/a", b"1".to_vec(), None)
                .await
                .expect("put");
            store
                .put("/shibafu/v1/b", b"1".to_vec(), None)
                .await
                .expect("put");
            delete_all(&store, vec!["/shibafu/v1/a".into()], LIMIT)
                .await
                .expect("delete");
            assert!(store.get("/shibafu/v1/a").await.expect("get").is_none());
            assert!(store.get("/shibafu/v1/b").await.expect("get").is_some());
        });
    }
}
