//! In-memory [`Store`] with etcd semantics, for unit tests of everything above the store.
//!
//! Revisions, transactions, leases, a watch history with compaction, and fault injection
//! (`set_available`, `break_watches`) so callers can test their recovery paths without etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;

use super::{Compare, KeyValue, Store, StoreError, TxnOp, WatchEvent, WatchStream};

type WatchItem = Result<Vec<WatchEvent>, StoreError>;

/// An in-memory store; clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    revision: i64,
    compacted: i64,
    kvs: BTreeMap<String, KeyValue>,
    history: Vec<WatchEvent>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    watchers: Vec<Watcher>,
    available: bool,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            revision: 1,
            compacted: 0,
            kvs: BTreeMap::new(),
            history: Vec::new(),
            leases: BTreeMap::new(),
            next_lease: 0x1000,
            watchers: Vec::new(),
            available: true,
        }
    }
}

struct Lease {
    ttl: i64,
    keys: BTreeSet<String>,
}

struct Watcher {
    prefix: String,
    from: i64,
    tx: mpsc::UnboundedSender<WatchItem>,
}

impl MemoryStore {
    /// An empty store at revision 1.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Current revision of the store.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }

    /// Drops the history before `revision`: watches from an older revision get `Compacted`.
    pub fn compact(&self, revision: i64) {
        let mut g = self.lock();
        let revision = revision.min(g.revision);
        if revision > g.compacted {
            g.compacted = revision;
            g.history.retain(|e| e.revision() >= revision);
        }
    }

    /// Expires a lease now, as if its TTL ran out: deletes it and its keys. False if unknown.
    pub fn expire_lease(&self, lease: i64) -> bool {
        self.lock().drop_lease(lease)
    }

    /// Simulates losing (`false`) or regaining (`true`) the backend. While down every call fails
    /// with `Unavailable`; going down also breaks every open watch.
    pub fn set_available(&self, available: bool) {
        let mut g = self.lock();
        g.available = available;
        if !available {
            g.break_watches();
        }
    }

    /// Ends every open watch with an `Unavailable` error, as a dropped connection does.
    pub fn break_watches(&self) {
        self.lock().break_watches();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_up(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let g = self.lock();
        if g.available {
            Ok(g)
        } else {
            Err(StoreError::Unavailable(
                "memory store set unavailable".into(),
            ))
        }
    }
}

impl Inner {
    fn put_event(&mut self, rev: i64, key: &str, value: Vec<u8>, lease: i64) -> WatchEvent {
        let create_revision = match self.kvs.get(key) {
            Some(old) => {
                let old_lease = old.lease;
                if let Some(l) = self.leases.get_mut(&old_lease) {
                    l.keys.remove(key);
                }
                old.create_revision
            }
            None => rev,
        };
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(key.to_string());
        }
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: rev,
            lease,
        };
        self.kvs.insert(key.to_string(), kv.clone());
        WatchEvent::Put(kv)
    }

    fn delete_event(&mut self, rev: i64, key: &str) -> Option<WatchEvent> {
        let old = self.kvs.remove(key)?;
        if let Some(l) = self.leases.get_mut(&old.lease) {
            l.keys.remove(key);
        }
        Some(WatchEvent::Delete {
            key: key.to_string(),
            mod_revision: rev,
        })
    }

    /// Records the events of one revision and hands them to the watchers.
    fn commit(&mut self, events: Vec<WatchEvent>) {
        if events.is_empty() {
            return;
        }
        self.revision += 1;
        self.history.extend(events.iter().cloned());
        self.watchers.retain(|w| {
            let mine: Vec<WatchEvent> = events
                .iter()
                .filter(|e| e.revision() >= w.from && event_key(e).starts_with(&w.prefix))
                .cloned()
                .collect();
            mine.is_empty() || w.tx.send(Ok(mine)).is_ok()
        });
    }

    fn drop_lease(&mut self, lease: i64) -> bool {
        let Some(l) = self.leases.remove(&lease) else {
            return false;
        };
        let rev = self.revision + 1;
        let events = l
            .keys
            .iter()
            .filter_map(|k| self.delete_event(rev, k))
            .collect();
        self.commit(events);
        true
    }

    fn break_watches(&mut self) {
        for w in self.watchers.drain(..) {
            // A watcher that already went away needs no error.
            let _ =
                w.tx.send(Err(StoreError::Unavailable("watch connection lost".into())));
        }
    }

    fn holds(&self, c: &Compare) -> bool {
        match c {
            Compare::Absent(k) => !self.kvs.contains_key(k),
            Compare::ModRevision(k, r) => self.kvs.get(k).is_some_and(|kv| kv.mod_revision == *r),
            Compare::Value(k, v) => self.kvs.get(k).is_some_and(|kv| kv.value == *v),
        }
    }

    fn check_lease(&self, lease: Option<i64>) -> Result<i64, StoreError> {
        match lease {
            None | Some(0) => Ok(0),
            Some(l) if self.leases.contains_key(&l) => Ok(l),
            Some(l) => Err(StoreError::LeaseNotFound(l)),
        }
    }
}

fn event_key(e: &WatchEvent) -> &str {
    match e {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

/// Groups events (in revision order) into one batch per revision.
fn batches(events: impl Iterator<Item = WatchEvent>) -> Vec<Vec<WatchEvent>> {
    let mut out: Vec<Vec<WatchEvent>> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some(b) if b.last().map(WatchEvent::revision) == Some(e.revision()) => b.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

/// The entries of `kvs` whose keys start with `prefix`, in key order.
fn under<'a>(
    kvs: &'a BTreeMap<String, KeyValue>,
    prefix: &'a str,
) -> impl Iterator<Item = &'a KeyValue> + 'a {
    kvs.range(prefix.to_string()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, kv)| kv)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock_up()?.kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let g = self.lock_up()?;
        let kvs = under(&g.kvs, prefix).cloned().collect();
        Ok((kvs, g.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<i64, StoreError> {
        let mut g = self.lock_up()?;
        let lease = g.check_lease(lease)?;
        let rev = g.revision + 1;
        let ev = g.put_event(rev, key, value, lease);
        g.commit(vec![ev]);
        Ok(g.revision)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut g = self.lock_up()?;
        let rev = g.revision + 1;
        let ev = g.delete_event(rev, key);
        let existed = ev.is_some();
        g.commit(ev.into_iter().collect());
        Ok(existed)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, StoreError> {
        let mut g = self.lock_up()?;
        if !compares.iter().all(|c| g.holds(c)) {
            return Ok(false);
        }
        for op in &ops {
            if let TxnOp::Put { lease, .. } = op {
                g.check_lease(*lease)?;
            }
        }
        let rev = g.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let ev = g.put_event(rev, &key, value, lease.unwrap_or(0));
                    events.push(ev);
                }
                TxnOp::Delete(key) => events.extend(g.delete_event(rev, &key)),
            }
        }
        g.commit(events);
        Ok(true)
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, StoreError> {
        let mut g = self.lock_up()?;
        let id = g.next_lease;
        g.next_lease += 1;
        g.leases.insert(
            id,
            Lease {
                ttl: ttl_secs,
                keys: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, StoreError> {
        let g = self.lock_up()?;
        g.leases
            .get(&lease)
            .map(|l| l.ttl)
            .ok_or(StoreError::LeaseNotFound(lease))
    }

    async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        let mut g = self.lock_up()?;
        if g.drop_lease(lease) {
            Ok(())
        } else {
            Err(StoreError::LeaseNotFound(lease))
        }
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let g = self.lock_up()?;
        Ok(under(&g.kvs, prefix).map(|kv| kv.key.clone()).collect())
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        drop(self.lock_up()?);
        MemoryStore::compact(self, revision);
        Ok(())
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        let mut g = self.lock_up()?;
        let from = if from_revision <= 0 {
            g.revision + 1
        } else {
            from_revision
        };
        if from < g.compacted {
            let err = StoreError::Compacted {
                requested: from,
                compact_revision: g.compacted,
            };
            return Ok(stream::iter([Err(err)]).boxed());
        }
        let backlog = batches(
            g.history
                .iter()
                .filter(|e| e.revision() >= from && event_key(e).starts_with(prefix))
                .cloned(),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        g.watchers.push(Watcher {
            prefix: prefix.to_string(),
            from,
            tx,
        });
        let live = stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        });
        Ok(stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str, value: &str, lease: Option<i64>) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            lease,
        }
    }

    async fn next(s: &mut WatchStream) -> WatchItem {
        tokio::time::timeout(std::time::Duration::from_secs(1), s.next())
            .await
            .expect("watch item in time")
            .expect("stream open")
    }

    #[tokio::test]
    async fn revisions_and_list() {
        let s = MemoryStore::new();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.put("/a/1", b"x".to_vec(), None).await.expect("put"), 2);
        assert_eq!(s.put("/a/1", b"y".to_vec(), None).await.expect("put"), 3);
        s.put("/b/1", b"z".to_vec(), None).await.expect("put");
        let kv = s.get("/a/1").await.expect("get").expect("exists");
        assert_eq!((kv.create_revision, kv.mod_revision), (2, 3));
        let (kvs, rev) = s.list("/a/").await.expect("list");
        assert_eq!(kvs.len(), 1);
        assert_eq!(rev, 4);
        s.put("/a0", b"w".to_vec(), None).await.expect("put");
        assert_eq!(s.list_keys("/a/").await.expect("keys"), ["/a/1"]);
        assert_eq!(
            s.list_keys("/").await.expect("keys"),
            ["/a/1", "/a0", "/b/1"]
        );
        s.delete("/a0").await.expect("delete");
        assert!(s.delete("/a/1").await.expect("delete"));
        assert!(!s.delete("/a/1").await.expect("delete"));
        assert_eq!(
            s.revision(),
            7,
            "deleting a missing key does not bump the revision"
        );
    }

    #[tokio::test]
    async fn txn_compares() {
        let s = MemoryStore::new();
        let ok = s
            .txn(
                vec![Compare::Absent("/k".into())],
                vec![put_op("/k", "1", None)],
            )
            .await
            .expect("txn");
        assert!(ok);
        let again = s
            .txn(
                vec![Compare::Absent("/k".into())],
                vec![put_op("/k", "2", None)],
            )
            .await
            .expect("txn");
        assert!(!again);
        let rev = s.get("/k").await.expect("get").expect("kv").mod_revision;
        let value_ok = Compare::Value("/k".into(), b"1".to_vec());
        let rev_ok = Compare::ModRevision("/k".into(), rev);
        let ops = vec![put_op("/k", "3", None), TxnOp::Delete("/j".into())];
        assert!(s.txn(vec![value_ok, rev_ok], ops).await.expect("txn"));
        let stale = Compare::ModRevision("/k".into(), rev);
        assert!(!s
            .txn(vec![stale], vec![TxnOp::Delete("/k".into())])
            .await
            .expect("txn"));
        assert!(!s
            .txn(vec![Compare::Value("/missing".into(), vec![])], vec![])
            .await
            .expect("txn"));
        assert_eq!(s.get("/k").await.expect("get").expect("kv").value, b"3");
    }

    #[tokio::test]
    async fn leases_delete_their_keys() {
        let s = MemoryStore::new();
        let lease = s.grant_lease(5).await.expect("grant");
        s.put("/n/1", b"a".to_vec(), Some(lease))
            .await
            .expect("put");
        s.txn(vec![], vec![put_op("/n/2", "b", Some(lease))])
            .await
            .expect("txn");
        s.put("/n/3", b"c".to_vec(), None).await.expect("put");
        assert_eq!(s.keep_alive(lease).await.expect("keepalive"), 5);
        let mut w = s.watch("/n/", 0).await.expect("watch");
        assert!(s.expire_lease(lease));
        let batch = next(&mut w).await.expect("events");
        assert_eq!(batch.len(), 2, "both lease keys deleted in one revision");
        assert!(batch.iter().all(|e| e.revision() == batch[0].revision()));
        let (kvs, _) = s.list("/n/").await.expect("list");
        assert_eq!(kvs.len(), 1);
        assert!(matches!(
            s.keep_alive(lease).await,
            Err(StoreError::LeaseNotFound(_))
        ));
        assert!(matches!(
            s.put("/n/4", vec![], Some(lease)).await,
            Err(StoreError::LeaseNotFound(_))
        ));
        assert!(matches!(
            s.revoke_lease(lease).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows() {
        let s = MemoryStore::new();
        s.put("/w/a", b"1".to_vec(), None).await.expect("put");
        s.put("/other", b"1".to_vec(), None).await.expect("put");
        s.put("/w/b", b"1".to_vec(), None).await.expect("put");
        let mut w = s.watch("/w/", 2).await.expect("watch");
        assert_eq!(next(&mut w).await.expect("a")[0].revision(), 2);
        assert_eq!(next(&mut w).await.expect("b")[0].revision(), 4);
        s.delete("/w/a").await.expect("delete");
        let del = next(&mut w).await.expect("delete event");
        assert_eq!(
            del,
            vec![WatchEvent::Delete {
                key: "/w/a".into(),
                mod_revision: 5
            }]
        );
    }

    #[tokio::test]
    async fn compaction_and_faults() {
        let s = MemoryStore::new();
        for i in 0..5 {
            s.put("/c/k", vec![i], None).await.expect("put");
        }
        s.compact(4);
        let mut old = s.watch("/c/", 3).await.expect("watch");
        assert!(matches!(
            next(&mut old).await,
            Err(StoreError::Compacted {
                requested: 3,
                compact_revision: 4
            })
        ));
        let mut ok = s.watch("/c/", 4).await.expect("watch");
        for rev in 4..=6 {
            assert_eq!(next(&mut ok).await.expect("events")[0].revision(), rev);
        }
        s.break_watches();
        assert!(matches!(
            next(&mut ok).await,
            Err(StoreError::Unavailable(_))
        ));
        s.set_available(false);
        assert!(matches!(
            s.get("/c/k").await,
            Err(StoreError::Unavailable(_))
        ));
        s.set_available(true);
        assert!(s.get("/c/k").await.expect("get").is_some());
    }
}
