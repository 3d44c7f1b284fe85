use shibafu_overlay::api::CreateNetwork;
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::racing_store::{RacingStore, Rival};

async fn store_with(networks: &[(&str, &str)]) -> MemoryStore {
    let store = MemoryStore::new();
    for (name, subnet) in networks {
        let req = CreateNetwork {
            name: name.to_string(),
            subnet: subnet.to_string(),
            ..CreateNetwork::default()
        };
        cluster::create_network(&store, &req).await.expect("create");
    }
    store
}

async fn three() -> MemoryStore {
    store_with(&[
        ("frontend", "172.21.0.0/24"),
        ("backend", "172.22.0.0/24"),
        ("database", "172.23.0.0/24"),
    ])
    .await
}

/// Every key and value in the store, to prove a failed call changed nothing.
async fn dump(store: &dyn Store) -> Vec<(String, Vec<u8>)> {
    let (kvs, _) = store.list(&Prefix::All.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

async fn link_keys(store: &dyn Store) -> Vec<String> {
    let (kvs, _) = store.list(&Prefix::Links.to_string()).await.expect("list");
    kvs.into_iter().map(|kv| kv.key).collect()
}

#[tokio::test]
async fn link_is_stored_once_in_canonical_order() {
    let store = three().await;
    let (link, linked) = create_link(&store, "frontend", "backend")
        .await
        .expect("link");
    assert_eq!(linked, Linked::Created);
    assert_eq!(link, Link::new("backend", "frontend"));
    assert_eq!((link.a.as_str(), link.b.as_str()), ("backend", "frontend"));
    assert_eq!(
        link_keys(&store).await,
        ["/shibafu/v1/links/backend+frontend"]
    );
    let kv = store
        .get("/shibafu/v1/links/backend+frontend")
        .await
        .expect("get")
        .expect("stored");
    let stored: Link = serde_json::from_slice(&kv.value).expect("json");
    assert_eq!(stored, link);

    let before = dump(&store).await;
    for (a, b) in [("frontend", "backend"), ("backend", "frontend")] {
        let (again, linked) = create_link(&store, a, b).await.expect("idempotent");
        assert_eq!((again, linked), (link.clone(), Linked::Existing));
    }
    assert_eq!(dump(&store).await, before, "linking twice changes nothing");
}

#[tokio::test]
async fn bad_link_requests_change_nothing() {
    let store = three().await;
    let before = dump(&store).await;
    let cases = [
        ("backend", "backend", ErrorKind::Invalid),
        ("Backend", "frontend", ErrorKind::Invalid),
        ("backend", "", ErrorKind::Invalid),
        ("backend", "nope", ErrorKind::NotFound),
        ("nope", "backend", ErrorKind::NotFound),
    ];
    for (a, b, kind) in cases {
        let e = create_link(&store, a, b).await.expect_err("refused");
        assert_eq!(e.kind, kind, "{a} {b}: {}", e.error);
    }
    let e = create_link(&store, "backend", "backend")
        .await
        .expect_err("self");
    assert_eq!(
        e.error,
        r#"cannot link network "backend" to itself: name two different networks"#
    );
    let e = create_link(&store, "backend", "nope")
        .await
        .expect_err("missing");
    assert_eq!(e.error, r#"no network named "nope""#);
    assert_eq!(dump(&store).await, before);
}

#[tokio::test]
async fn remove_link_either_order_then_404() {
    let store = three().await;
    create_link(&store, "backend", "frontend")
        .await
        .expect("link");
    create_link(&store, "backend", "database")
        .await
        .expect("link");
    let removed = remove_link(&store, "frontend", "backend")
        .await
        .expect("isolate");
    assert_eq!(removed, Link::new("backend", "frontend"));
    assert_eq!(
        link_keys(&store).await,
        ["/shibafu/v1/links/backend+database"]
    );
    let e = remove_link(&store, "backend", "frontend")
        .await
        .expect_err("gone");
    assert_eq!(
        (e.kind, e.error.as_str()),
        (
            ErrorKind::NotFound,
            r#"networks "backend" and "frontend" are not linked"#
        )
    );
    let e = remove_link(&store, "database", "database")
        .await
        .expect_err("self");
    assert_eq!(e.kind, ErrorKind::Invalid);
}

#[tokio::test]
async fn list_is_sorted_and_skips_malformed_values() {
    let store = three().await;
    for (a, b) in [
        ("frontend", "database"),
        ("frontend", "backend"),
        ("database", "backend"),
    ] {
        create_link(&store, a, b).await.expect("link");
    }
    store
        .put("/shibafu/v1/links/x+y", b"{not json".to_vec(), None)
        .await
        .expect("junk");
    let got: Vec<(String, String)> = list_links(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|l| (l.a, l.b))
        .collect();
    let want = [
        ("backend", "database"),
        ("backend", "frontend"),
        ("database", "frontend"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn unavailable_store_is_503() {
    let store = three().await;
    store.set_available(false);
    for e in [
        create_link(&store, "backend", "frontend")
            .await
            .map(|_| ())
            .expect_err("down"),
        remove_link(&store, "backend", "frontend")
            .await
            .map(|_| ())
            .expect_err("down"),
        list_links(&store).await.map(|_| ()).expect_err("down"),
    ] {
        assert_eq!(e.kind, ErrorKind::Unavailable, "{}", e.error);
    }
}

async fn racing(rival: Rival) -> RacingStore {
    RacingStore::new(three().await, rival)
}

#[tokio::test]
async fn link_to_a_network_removed_meanwhile_is_not_written() {
    let store = racing(Rival::RemoveNetwork("frontend")).await;
    let e = create_link(&store, "backend", "frontend")
        .await
        .expect_err("network went away");
    assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.error);
    assert!(link_keys(&store.inner).await.is_empty());
}

#[tokio::test]
async fn removal_racing_a_new_link_takes_the_link_too() {
    let store = racing(Rival::Link("backend", "frontend")).await;
    let removed = cluster::remove_network(&store, "frontend", false)
        .await
        .expect("removed after a retry");
    assert_eq!(removed.links, 1);
    assert!(link_keys(&store.inner).await.is_empty());
}

#[tokio::test]
async fn concurrent_link_of_the_same_pair_is_existing() {
    let store = racing(Rival::Link("frontend", "backend")).await;
    let (link, linked) = create_link(&store, "backend", "frontend")
        .await
        .expect("link");
    assert_eq!(linked, Linked::Existing);
    assert_eq!(link, Link::new("backend", "frontend"));
    assert_eq!(link_keys(&store.inner).await.len(), 1);
}
