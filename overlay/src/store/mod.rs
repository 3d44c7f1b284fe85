//! Cluster state storage: the `Store` trait with an etcd and an in-memory implementation.
//!
//! The trait is the raw key-value contract (get, list, CAS transactions, leases, watch from a
//! revision); typed access to the schema goes through [`keys::Key`] and [`crate::model`].

pub mod compactor;
pub mod etcd;
pub mod every;
pub mod keys;
pub mod lease;
pub mod memory;
mod typed;
pub mod watch;

pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use typed::StoreExt;
pub use watch::{watch_changes, watch_changes_with, Backoff, ClusterChange, ClusterChangeStream};

use async_trait::async_trait;
use futures::stream::BoxStream;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The watch start revision was compacted away; re-list and resume.
    #[error("revision {requested} was compacted (oldest kept: {compact_revision})")]
    Compacted {
        /// Revision the watch asked for.
        requested: i64,
        /// Oldest revision still available.
        compact_revision: i64,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:x} not found")]
    LeaseNotFound(i64),
    /// The store's connection settings are wrong (never cured by retrying).
    #[error("{0}")]
    Config(String),
    /// A stored value did not parse.
    #[error("malformed value at {key}: {reason}")]
    Malformed {
        /// Key of the value.
        key: String,
        /// Parse error.
        reason: String,
    },
}

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key.
    pub key: String,
    /// Raw value (JSON for the v1 schema).
    pub value: Vec<u8>,
    /// Revision that created the key.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Lease the key is attached to (0 = none).
    pub lease: i64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated.
    Put(KeyValue),
    /// A key was deleted (explicitly or by lease expiry).
    Delete {
        /// Full key.
        key: String,
        /// Revision of the deletion.
        mod_revision: i64,
    },
}

impl WatchEvent {
    /// Revision at which this event happened.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists with exactly this mod revision (which must be > 0).
    ModRevision(String, i64),
    /// The key exists with exactly this value.
    Value(String, Vec<u8>),
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Put a value, optionally under a lease.
    Put {
        /// Full key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease id, if any.
        lease: Option<i64>,
    },
    /// Delete a key.
    Delete(String),
}

/// A batch of watch events, in revision order.
pub type WatchStream = BoxStream<'static, Result<Vec<WatchEvent>, StoreError>>;

/// The raw key-value contract both etcd and the in-memory store fulfil.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Lists every key under a prefix, with the store revision the list was taken at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError>;
    /// Lists the names of the keys under a prefix, without their values.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Writes one key (optionally under a lease); returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<i64, StoreError>;
    /// Deletes one key; true if it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Applies `ops` atomically if every compare holds; returns whether it did.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError>;
    /// Grants a lease with a TTL in seconds; returns its id.
    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError>;
    /// Refreshes a lease once; returns the remaining TTL, or `LeaseNotFound`.
    async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError>;
    /// Revokes a lease, deleting its keys.
    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError>;
    /// Watches a prefix from a revision (inclusive; `0` = from now on). Events come in batches,
    /// one revision never split over two batches. If that revision is gone, the stream yields
    /// `Compacted` and ends; on a lost connection it yields `Unavailable` (or just ends).
    /// Most callers want the resilient [`watch_changes`] instead.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError>;
    /// Drops the history before `revision`: watches from an older revision get `Compacted`.
    /// A history already compacted that far is not an error.
    async fn compact(&self, revision: i64) -> Result<(), StoreError>;
}
