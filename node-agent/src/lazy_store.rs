//! A [`Store`] that connects on first use (and retries on the next call after a failed connect),
//! so the agent starts, serves its API and adopts its dataplane even while etcd is unreachable.

use std::sync::Arc;

use async_trait::async_trait;
use shibafu_overlay::store::{Compare, KeyValue, Store, StoreError, TxnOp, WatchStream};
use tokio::sync::OnceCell;

use crate::store_actor::Connector;

/// See the module documentation.
pub struct LazyStore {
    connect: Connector,
    inner: OnceCell<Arc<dyn Store>>,
}

impl LazyStore {
    /// A store that calls `connect` when first needed.
    pub fn new(connect: Connector) -> LazyStore {
        LazyStore {
            connect,
            inner: OnceCell::new(),
        }
    }

    async fn get_store(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.inner.get_or_try_init(|| (self.connect)()).await
    }
}

#[async_trait]
impl Store for LazyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.get_store().await?.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        self.get_store().await?.list(prefix).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.get_store().await?.list_keys(prefix).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<i64, StoreError> {
        self.get_store().await?.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.get_store().await?.delete(key).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        self.get_store().await?.txn(compares, ops).await
    }
    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        self.get_store().await?.grant_lease(ttl_secs).await
    }
    async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        self.get_store().await?.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.get_store().await?.revoke_lease(lease).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        self.get_store().await?.watch(prefix, from_revision).await
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.get_store().await?.compact(revision).await
    }
}
