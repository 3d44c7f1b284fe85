//! IPAM claim protocol against a real etcd: concurrent allocators never share an address, and
//! nothing leaks after release.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use shibafu_overlay::ipam::{reclaim_dead_blocks, Ipam, IpamError};
use shibafu_overlay::model::{IpamBlock, Network};
use shibafu_overlay::store::keys::Prefix;
use shibafu_overlay::store::{Store, StoreError};

fn network(name: &str, subnet: &str) -> Network {
    Network::new(name, subnet.parse().expect("subnet"), 4096)
}

/// Blocks of a network as stored in etcd: block -> owner.
async fn stored_blocks(store: &dyn Store, net: &str) -> BTreeMap<Ipv4Net, String> {
    let (kvs, _) = store
        .list(&Prefix::BlocksOf(net.into()).to_string())
        .await
        .expect("list");
    kvs.iter()
        .map(|kv| {
            let b: IpamBlock = serde_json::from_slice(&kv.value).expect("block");
            (b.cidr, b.node)
        })
        .collect()
}

/// Three allocators, each with its own etcd connection.
async fn allocators(etcd: &common::Etcd) -> Vec<Ipam> {
    let mut out = Vec::new();
    for i in 1..=3 {
        let store: Arc<dyn Store> = Arc::new(etcd.store().await);
        out.push(Ipam::new(store, format!("node{i}")));
    }
    out
}

/// Allocates `count` addresses (or until exhausted when `count` is None) on every allocator at
/// once; returns each allocator's addresses.
async fn allocate_concurrently(
    ipams: &[Ipam],
    net: &Network,
    count: Option<usize>,
) -> Vec<Vec<Ipv4Addr>> {
    let tasks: Vec<_> = ipams
        .iter()
        .map(|ipam| {
            let (ipam, net) = (ipam.clone(), net.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                while count.is_none_or(|c| got.len() < c) {
                    match ipam.allocate(&net, None).await {
                        Ok(ip) => got.push(ip),
                        Err(IpamError::Exhausted { .. }) if count.is_none() => break,
                        Err(e) => panic!("{}: allocation failed: {e}", ipam.node()),
                    }
                }
                got
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("allocator task"));
    }
    out
}

async fn release_concurrently(ipams: &[Ipam], net: &Network, addrs: &[Vec<Ipv4Addr>]) {
    let tasks: Vec<_> = ipams
        .iter()
        .zip(addrs)
        .map(|(ipam, mine)| {
            let (ipam, net, mine) = (ipam.clone(), net.clone(), mine.clone());
            tokio::spawn(async move {
                for ip in mine {
                    ipam.release(&net, ip).await.expect("release");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("release task");
    }
}

fn assert_unique(addrs: &[Vec<Ipv4Addr>]) -> BTreeSet<Ipv4Addr> {
    let all: Vec<Ipv4Addr> = addrs.iter().flatten().copied().collect();
    let unique: BTreeSet<Ipv4Addr> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an address was handed out twice");
    unique
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_allocators_never_share_an_address_and_leak_nothing() {
    let etcd = common::Etcd::start();
    let check = etcd.store().await;
    let net = network("big", "10.40.0.0/16");
    let ipams = allocators(&etcd).await;

    let got = allocate_concurrently(&ipams, &net, Some(400)).await;
    let unique = assert_unique(&got);
    assert_eq!(unique.len(), 1200);
    // Every address lies in a block its allocator owns in etcd.
    let blocks = stored_blocks(&check, "big").await;
    for (ipam, mine) in ipams.iter().zip(&got) {
        for ip in mine {
            let owner = blocks.iter().find(|(b, _)| b.contains(ip)).map(|(_, o)| o);
            assert_eq!(owner.map(String::as_str), Some(ipam.node()), "{ip}");
        }
    }

    release_concurrently(&ipams, &net, &got).await;
    assert!(
        stored_blocks(&check, "big").await.is_empty(),
        "every block was given back"
    );
    let again = ipams[0].allocate(&net, None).await.expect("allocate again");
    assert_eq!(
        again,
        Ipv4Addr::new(10, 40, 0, 2),
        "the lowest address is free again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_subnet_is_shared_to_the_last_address_twice() {
    let etcd = common::Etcd::start();
    let check = etcd.store().await;
    let net = network("small", "172.30.0.0/24");
    let ipams = allocators(&etcd).await;
    // 256 addresses minus network, gateway and broadcast.
    for round in 0..2 {
        let got = allocate_concurrently(&ipams, &net, None).await;
        let unique = assert_unique(&got);
        assert_eq!(
            unique.len(),
            253,
            "round {round}: the whole subnet, each address once"
        );
        assert!(!unique.contains(&net.gateway()));
        release_concurrently(&ipams, &net, &got).await;
        assert!(
            stored_blocks(&check, "small").await.is_empty(),
            "round {round}: no leak"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_of_a_dead_node_are_reclaimed_for_the_living() {
    let etcd = common::Etcd::start();
    let check = etcd.store().await;
    let net = network("tiny", "172.31.0.0/28");
    let ipams = allocators(&etcd).await;
    let dead = allocate_concurrently(&ipams[2..], &net, None).await;
    assert_eq!(dead[0].len(), 13, "one node alone gets the whole /28");
    let exhausted = ipams[0].allocate(&net, None).await;
    assert!(
        matches!(exhausted, Err(IpamError::Exhausted { .. })),
        "{exhausted:?}"
    );

    let live = ["node1".to_string(), "node2".to_string()];
    let reclaimed = reclaim_dead_blocks(&check, &live).await.expect("reclaim");
    assert_eq!(reclaimed.len(), 4);
    assert!(reclaimed.iter().all(|b| b.node == "node3"));
    assert_eq!(
        ipams[0].allocate(&net, None).await.expect("after reclaim"),
        Ipv4Addr::new(172, 31, 0, 2)
    );
    assert!(reclaim_dead_blocks(&check, &live)
        .await
        .expect("reclaim")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_fails_cleanly_while_etcd_is_down() {
    let mut etcd = common::Etcd::start();
    let net = network("down", "172.29.0.0/24");
    let ipam = Ipam::new(Arc::new(etcd.store().await), "node1");
    etcd.kill();
    let res = ipam.allocate(&net, None).await;
    assert!(
        matches!(res, Err(IpamError::Store(StoreError::Unavailable(_)))),
        "{res:?}"
    );
    etcd.resume();
    let mut ip = None;
    for _ in 0..50 {
        if let Ok(a) = ipam.allocate(&net, None).await {
            ip = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ip, Some(Ipv4Addr::new(172, 29, 0, 2)));
}
