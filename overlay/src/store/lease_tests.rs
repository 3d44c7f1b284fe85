//! Tests of keys held under a lease, over the memory store (paused time for `hold`).

use super::*;
use crate::store::MemoryStore;

const LIMIT: Duration = Duration::from_secs(2);
const KEY: &str = "/shibafu/v1/coordinators/c1";

fn owned() -> Owned {
    [(KEY.to_string(), b"{}".to_vec())].into()
}

#[tokio::test]
async fn register_writes_owned_keys_under_one_lease() {
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
}

#[tokio::test]
async fn register_fails_cleanly_when_the_store_is_down() {
    let mem = Arc::new(MemoryStore::new());
    mem.set_available(false);
    let store: Arc<dyn Store> = mem.clone();
    assert!(matches!(
        register(store, 5, owned(), LIMIT).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn delete_all_removes_keys() {
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
}

/// The lease `KEY` is held under, once it is there (polling in paused time).
async fn held(mem: &MemoryStore) -> i64 {
    for _ in 0..100 {
        if let Some(kv) = mem.get(KEY).await.ok().flatten() {
            return kv.lease;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{KEY} never written");
}

#[tokio::test(start_paused = true)]
async fn hold_registers_comes_back_after_losses_and_revokes_on_stop() {
    let mem = MemoryStore::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async {
        let _ = rx.await;
    };
    let task = tokio::spawn(hold(
        Arc::new(mem.clone()),
        owned(),
        Duration::from_secs(3),
        stop,
    ));
    let first = held(&mem).await;
    assert_ne!(first, 0, "written under a lease");

    // etcd lost the lease: a new one, the key written again.
    assert!(mem.expire_lease(first));
    assert!(mem.get(KEY).await.expect("get").is_none());
    let second = held(&mem).await;
    assert_ne!(second, first);

    // An outage that leaves the lease but loses the key (etcd back from an older copy).
    mem.set_available(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    mem.set_available(true);
    mem.delete(KEY).await.expect("delete");
    assert_eq!(held(&mem).await, second, "rewritten under the same lease");

    tx.send(()).expect("stop");
    task.await.expect("hold ends");
    assert!(
        mem.get(KEY).await.expect("get").is_none(),
        "revoked on stop"
    );
    assert!(mem.keep_alive(second).await.is_err(), "lease gone");
}
