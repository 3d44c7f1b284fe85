//! Claim protocol tests against the in-memory store.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::tests::net;
use super::{reclaim_dead_blocks, Ipam, IpamError};
use crate::model::{Endpoint, IpamBlock, Network};
use crate::store::keys::{Key, Prefix};
use crate::store::{MemoryStore, Store, TxnOp};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("ipv4")
}

fn cidr(s: &str) -> Ipv4Net {
    s.parse().expect("cidr")
}

async fn stored_blocks(store: &MemoryStore, network: &str) -> Vec<(Ipv4Net, String)> {
    let (kvs, _) = store
        .list(&Prefix::BlocksOf(network.into()).to_string())
        .await
        .expect("list");
    kvs.iter()
        .map(|kv| {
            let b: IpamBlock = serde_json::from_slice(&kv.value).expect("block json");
            (b.cidr, b.node)
        })
        .collect()
}

fn setup(subnet: &str) -> (MemoryStore, Network, Ipam, Ipam) {
    let m = MemoryStore::new();
    let n = net("f", subnet, None);
    let a = Ipam::new(Arc::new(m.clone()), "n1");
    let b = Ipam::new(Arc::new(m.clone()), "n2");
    (m, n, a, b)
}

#[tokio::test]
async fn nodes_claim_separate_blocks() {
    let (m, n, a, b) = setup("172.21.0.0/24");
    assert_eq!(a.allocate(&n, None).await.expect("a1"), v4("172.21.0.2"));
    assert_eq!(a.allocate(&n, None).await.expect("a2"), v4("172.21.0.3"));
    assert_eq!(b.allocate(&n, None).await.expect("b1"), v4("172.21.0.64"));
    assert_eq!(
        stored_blocks(&m, "f").await,
        [
            (cidr("172.21.0.0/26"), "n1".to_string()),
            (cidr("172.21.0.64/26"), "n2".to_string())
        ]
    );
    assert_eq!(a.blocks("f").await, [cidr("172.21.0.0/26")]);
}

#[tokio::test]
async fn requested_addresses() {
    let (_m, n, a, b) = setup("172.21.0.0/24");
    assert_eq!(
        a.allocate(&n, Some(v4("172.21.0.200")))
            .await
            .expect("claims its block"),
        v4("172.21.0.200")
    );
    let taken = a.allocate(&n, Some(v4("172.21.0.200"))).await;
    assert!(
        matches!(taken, Err(IpamError::AddressTaken { .. })),
        "{taken:?}"
    );
    let other = b.allocate(&n, Some(v4("172.21.0.201"))).await;
    match other {
        Err(e @ IpamError::OwnedByOtherNode { .. }) => {
            assert!(e.to_string().contains("owned by node \"n1\""), "{e}");
        }
        other => panic!("expected OwnedByOtherNode, got {other:?}"),
    }
    let gw = a.allocate(&n, Some(v4("172.21.0.1"))).await;
    assert!(matches!(
        gw,
        Err(IpamError::Reserved {
            what: "gateway",
            ..
        })
    ));
    let outside = a.allocate(&n, Some(v4("10.0.0.2"))).await;
    assert!(matches!(outside, Err(IpamError::OutsideSubnet { .. })));
    assert_eq!(
        b.blocks("f").await,
        Vec::<Ipv4Net>::new(),
        "failed requests claim nothing"
    );
}

#[tokio::test]
async fn tiny_network_exhausts_then_everything_comes_back() {
    let (m, n, a, b) = setup("172.21.0.0/29");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(a.allocate(&n, None).await.expect("a"));
    }
    got.push(b.allocate(&n, None).await.expect("b"));
    let exhausted = b.allocate(&n, None).await;
    assert!(
        matches!(exhausted, Err(IpamError::Exhausted { .. })),
        "{exhausted:?}"
    );
    assert!(exhausted
        .expect_err("err")
        .to_string()
        .contains("no free address"));
    got.sort();
    let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(172, 21, 0, i)).collect();
    assert_eq!(got, want, "all five usable addresses, each once");
    for ip in &got {
        a.release(&n, *ip).await.expect("release a");
        b.release(&n, *ip).await.expect("release b");
    }
    assert!(
        stored_blocks(&m, "f").await.is_empty(),
        "empty blocks are given back"
    );
    a.release(&n, got[0]).await.expect("release is idempotent");
    assert_eq!(
        b.allocate(&n, None).await.expect("b again"),
        v4("172.21.0.2")
    );
}

#[tokio::test]
async fn recover_after_restart() {
    let (m, n, a, b) = setup("172.21.0.0/24");
    for _ in 0..3 {
        a.allocate(&n, None).await.expect("alloc");
    }
    let b_ip = b.allocate(&n, None).await.expect("b");
    // n1 restarts: .2 and .4 are still in use by its containers, .3 was detached meanwhile.
    let restarted = Ipam::new(Arc::new(m.clone()), "n1");
    restarted
        .recover(&n, &[v4("172.21.0.2"), v4("172.21.0.4")])
        .await
        .expect("recover");
    assert_eq!(
        restarted.allocate(&n, None).await.expect("next"),
        v4("172.21.0.3")
    );
    assert_eq!(
        restarted.allocate(&n, None).await.expect("next"),
        v4("172.21.0.5")
    );
    // An address whose block is free again is re-claimed; one in n2's block is reported.
    let again = Ipam::new(Arc::new(m.clone()), "n1");
    let res = again
        .recover(&n, &[v4("172.21.0.130"), b_ip, v4("172.21.0.2")])
        .await;
    assert!(
        matches!(res, Err(IpamError::OwnedByOtherNode { .. })),
        "{res:?}"
    );
    assert_eq!(
        again.blocks("f").await,
        [cidr("172.21.0.0/26"), cidr("172.21.0.128/26")]
    );
    let taken = again.allocate(&n, Some(v4("172.21.0.130"))).await;
    assert!(matches!(taken, Err(IpamError::AddressTaken { .. })));
}

#[tokio::test]
async fn recover_gives_back_unused_blocks() {
    let (m, n, a, _b) = setup("172.21.0.0/24");
    a.allocate(&n, None).await.expect("alloc");
    let restarted = Ipam::new(Arc::new(m.clone()), "n1");
    restarted.recover(&n, &[]).await.expect("recover");
    assert!(stored_blocks(&m, "f").await.is_empty());
}

#[tokio::test]
async fn store_outage_leaves_no_partial_state() {
    let (m, n, a, _b) = setup("172.21.0.0/24");
    m.set_available(false);
    assert!(matches!(
        a.allocate(&n, None).await,
        Err(IpamError::Store(_))
    ));
    m.set_available(true);
    assert_eq!(a.allocate(&n, None).await.expect("alloc"), v4("172.21.0.2"));
    // Releasing during an outage keeps the block (still ours in the store) and retries later.
    let second = a.allocate(&n, None).await.expect("alloc");
    m.set_available(false);
    a.release(&n, v4("172.21.0.2")).await.expect("release");
    a.release(&n, second).await.expect("release");
    m.set_available(true);
    assert_eq!(stored_blocks(&m, "f").await.len(), 1);
    let third = a.allocate(&n, None).await.expect("alloc");
    a.release(&n, third).await.expect("release");
    assert!(stored_blocks(&m, "f").await.is_empty());
}

fn endpoint(network: &str, node: &str, ip: Ipv4Addr) -> Endpoint {
    Endpoint::new(network, &format!("{node}-c"), node, ip)
}

#[tokio::test]
async fn dead_nodes_blocks_are_reclaimed_unless_used() {
    let (m, n, a, b) = setup("172.21.0.0/24");
    a.allocate(&n, None).await.expect("a");
    let b_ip = b.allocate(&n, None).await.expect("b");
    let ep = endpoint("f", "n2", b_ip);
    let key = Key::Endpoint {
        network: "f".into(),
        id: ep.id.clone(),
    };
    let value = serde_json::to_vec(&ep).expect("json");
    m.put(&key.to_string(), value, None).await.expect("put");
    let live = ["n1".to_string(), "n2".to_string()];
    assert!(reclaim_dead_blocks(&m, &live).await.expect("gc").is_empty());
    let reclaimed = reclaim_dead_blocks(&m, &[]).await.expect("gc");
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(
        (reclaimed[0].cidr, reclaimed[0].node.as_str()),
        (cidr("172.21.0.0/26"), "n1")
    );
    assert_eq!(
        stored_blocks(&m, "f").await,
        [(cidr("172.21.0.64/26"), "n2".to_string())]
    );
}

#[tokio::test]
async fn owner_compare_guards_endpoint_writes() {
    let (m, n, a, b) = setup("172.21.0.0/24");
    let ip = a.allocate(&n, None).await.expect("a");
    let cmp = a.owner_compare("f", ip).await.expect("compare");
    let write = || TxnOp::Put {
        key: "/ep".into(),
        value: vec![],
        lease: None,
    };
    assert!(m.txn(vec![cmp.clone()], vec![write()]).await.expect("txn"));
    // n1 is cut off: its block is reclaimed and claimed by n2.
    reclaim_dead_blocks(&m, &["n2".to_string()])
        .await
        .expect("gc");
    b.allocate(&n, Some(ip)).await.expect("n2 takes the block");
    assert!(!m.txn(vec![cmp], vec![write()]).await.expect("txn"));
    assert_eq!(a.owner_compare("f", v4("172.21.0.99")).await, None);
}
