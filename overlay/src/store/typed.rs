//! Typed access over the raw [`Store`]: list, read and write schema objects by [`Prefix`] and
//! [`Key`], every value decoded with the one schema check ([`decode`]).

use async_trait::async_trait;
use tracing::warn;

use super::keys::{Key, Prefix};
use super::{Compare, Store, StoreError, TxnOp};
use crate::model::{decode, Object};

/// Typed operations every [`Store`] has.
#[async_trait]
pub trait StoreExt: Store {
    /// Every usable object of kind `T` under `prefix` with the revision of the list; values
    /// that fail [`decode`] are logged and skipped.
    async fn list_objects<T: Object>(&self, prefix: &Prefix) -> Result<(Vec<T>, i64), StoreError> {
        let (kvs, revision) = self.list(&prefix.to_string()).await?;
        let objects = kvs
            .iter()
            .filter(|kv| Key::parse(&kv.key).is_some())
            .filter_map(|kv| match decode::<T>(&kv.key, &kv.value) {
                Ok(v) => Some(v),
                Err(reason) => {
                    warn!(key = %kv.key, %reason, "skipping stored value");
                    None
                }
            })
            .collect();
        Ok((objects, revision))
    }

    /// The object at `key` with its mod revision; `Malformed` when the value fails [`decode`].
    async fn get_object<T: Object>(&self, key: &Key) -> Result<Option<(T, i64)>, StoreError> {
        let key = key.to_string();
        let Some(kv) = self.get(&key).await? else {
            return Ok(None);
        };
        let v = decode::<T>(&key, &kv.value).map_err(|e| StoreError::Malformed {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((v, kv.mod_revision)))
    }

    /// Writes `value` at its own key (optionally under a lease); returns the new revision.
    async fn put_object<T: Object>(
        &self,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (key, bytes) = encode(value)?;
        self.put(&key, bytes, lease).await
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// The key and JSON bytes of `value`.
fn encode<T: Object>(value: &T) -> Result<(String, Vec<u8>), StoreError> {
    let key = value.key().to_string();
    let bytes = crate::model::encode(value).map_err(|e| StoreError::Malformed {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    Ok((key, bytes))
}

impl TxnOp {
    /// Puts `value` at its own key.
    pub fn put_object<T: Object>(value: &T, lease: Option<i64>) -> Result<TxnOp, StoreError> {
        let (key, bytes) = encode(value)?;
        Ok(TxnOp::Put {
            key,
            value: bytes,
            lease,
        })
    }

    /// Deletes `key`.
    pub fn delete(key: &Key) -> TxnOp {
        TxnOp::Delete(key.to_string())
    }
}

impl Compare {
    /// `key` does not exist.
    pub fn absent(key: &Key) -> Compare {
        Compare::Absent(key.to_string())
    }

    /// `key` exists with exactly this mod revision.
    pub fn mod_revision(key: &Key, revision: i64) -> Compare {
        Compare::ModRevision(key.to_string(), revision)
    }
}
