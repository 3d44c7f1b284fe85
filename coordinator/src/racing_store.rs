//! Test support: a store where a rival coordinator commits a change between our reads and our
//! first transaction, to test the coordinator's optimistic concurrency.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use shibafu_overlay::api::{CreateNetwork, PolicySpec};
use shibafu_overlay::store::{
    Compare, KeyValue, MemoryStore, Store, StoreError, TxnOp, WatchStream,
};

use crate::{cluster, links, policies};

/// What the rival commits.
pub(crate) enum Rival {
    /// Creates this network.
    CreateNetwork(CreateNetwork),
    /// Removes this network (and its links).
    RemoveNetwork(&'static str),
    /// Links these two networks.
    Link(&'static str, &'static str),
    /// Creates this policy.
    Policy(PolicySpec),
}

/// A [`MemoryStore`] whose first transaction is preceded by the rival's change.
pub(crate) struct RacingStore {
    /// The store underneath, to inspect after the race.
    pub(crate) inner: MemoryStore,
    rival: Rival,
    raced: AtomicBool,
}

impl RacingStore {
    /// `inner`, raced once by `rival`.
    pub(crate) fn new(inner: MemoryStore, rival: Rival) -> RacingStore {
        RacingStore {
            inner,
            rival,
            raced: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Store for RacingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_keys(prefix).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<i64, StoreError> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            match &self.rival {
                Rival::CreateNetwork(req) => {
                    cluster::create_network(&self.inner, req)
                        .await
                        .expect("rival create");
                }
                Rival::RemoveNetwork(name) => {
                    cluster::remove_network(&self.inner, name, true)
                        .await
                        .expect("rival remove");
                }
                Rival::Link(a, b) => {
                    links::create_link(&self.inner, a, b)
                        .await
                        .expect("rival link");
                }
                Rival::Policy(spec) => {
                    policies::create_policy(&self.inner, spec)
                        .await
                        .expect("rival policy");
                }
            }
        }
        self.inner.txn(compares, ops).await
    }
    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        self.inner.grant_lease(ttl_secs).await
    }
    async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease).await
    }
    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        Store::compact(&self.inner, revision).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from_revision).await
    }
}
