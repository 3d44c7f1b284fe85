//! etcd's history kept bounded: every interval the coordinator compacts it up to the revision it
//! saw one interval earlier. Without it each change stays in etcd's history for good, and steady
//! container churn fills etcd's space quota (2 GiB by default), after which etcd refuses every
//! write. A watcher that lags less than one interval resumes where it was; one that lags more
//! gets `Compacted` and lists again. Several coordinators may each run one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::every::Every;
use super::keys::Prefix;
use super::{Store, StoreError};

/// What one coordinator remembers between passes.
#[derive(Debug, Default)]
pub struct Compactor {
    /// The store revision read at the previous pass: the next pass compacts up to it.
    held: Option<i64>,
    /// The revision this compactor last compacted to.
    done: i64,
}

impl Compactor {
    /// One pass: compacts up to the revision read at the previous pass (if it moved on since the
    /// last compaction) and holds the revision now for the next. Returns the revision compacted
    /// to, if any.
    pub async fn pass(&mut self, store: &dyn Store) -> Result<Option<i64>, StoreError> {
        // A list answers with the store's revision; the coordinators' records are a few keys.
        let (_, now) = store.list(&Prefix::Coordinators.to_string()).await?;
        let Some(target) = self.held.replace(now) else {
            return Ok(None);
        };
        if target <= self.done {
            return Ok(None);
        }
        store.compact(target).await?;
        self.done = target;
        Ok(Some(target))
    }
}

/// Runs a pass every `interval` until `stop` turns true (the first one only reads the revision).
pub async fn run(store: Arc<dyn Store>, interval: Duration, stop: watch::Receiver<bool>) {
    let mut every = Every::new(interval, stop);
    let mut compactor = Compactor::default();
    while every.next().await {
        match compactor.pass(store.as_ref()).await {
            Ok(Some(revision)) => info!(revision, "etcd history compacted"),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "etcd history not compacted; trying again next interval"),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::store::MemoryStore;

    async fn put(s: &MemoryStore, key: &str) -> i64 {
        s.put(key, b"v".to_vec(), None).await.expect("put")
    }

    async fn compacted_before(s: &MemoryStore, revision: i64) -> bool {
        let mut w = s.watch("/", revision).await.expect("watch");
        matches!(w.next().await, Some(Err(StoreError::Compacted { .. })))
    }

    #[tokio::test]
    async fn compacts_to_what_it_saw_one_pass_earlier() {
        let s = MemoryStore::new();
        let mut c = Compactor::default();
        let first = put(&s, "/a").await;
        assert_eq!(c.pass(&s).await.expect("pass"), None, "nothing held yet");
        assert!(!compacted_before(&s, 1).await);

        let second = put(&s, "/b").await;
        assert_eq!(c.pass(&s).await.expect("pass"), Some(first));
        assert!(compacted_before(&s, first - 1).await);
        assert!(
            !compacted_before(&s, first).await,
            "history from {first} kept"
        );
        assert!(!compacted_before(&s, second).await);

        assert_eq!(c.pass(&s).await.expect("pass"), Some(second));
        assert_eq!(
            c.pass(&s).await.expect("pass"),
            None,
            "no writes since: nothing new to compact"
        );
        put(&s, "/c").await;
        assert_eq!(
            c.pass(&s).await.expect("pass"),
            None,
            "held the same revision"
        );
        assert_eq!(c.pass(&s).await.expect("pass"), Some(second + 1));
        assert_eq!(s.list("/").await.expect("list").0.len(), 3, "keys stay");
    }

    #[tokio::test]
    async fn an_unavailable_store_keeps_the_held_revision() {
        let s = MemoryStore::new();
        let mut c = Compactor::default();
        let first = put(&s, "/a").await;
        c.pass(&s).await.expect("pass");
        put(&s, "/b").await;
        s.set_available(false);
        assert!(c.pass(&s).await.is_err());
        s.set_available(true);
        assert_eq!(c.pass(&s).await.expect("pass"), Some(first));
    }

    #[tokio::test]
    async fn run_stops_when_told() {
        let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(s, Duration::from_millis(10), rx));
        tx.send(true).expect("send");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stopped")
            .expect("no panic");
    }
}
