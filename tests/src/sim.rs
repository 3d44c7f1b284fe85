//! The cluster simulator of the scale benchmark (`shibafu-sim`, `bench/scale.sh`): the etcd
//! state of many nodes with many endpoints, written straight into etcd as their agents would
//! (node records and endpoints under each node's lease), then churned at a steady rate. Real
//! agents and coordinators run against it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use shibafu_overlay::model::{Endpoint, Network, Node, Object, SCHEMA_VERSION};
use shibafu_overlay::store::{Store, StoreError, StoreExt};

/// The shape of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Simulated nodes (`sim0`..).
    pub nodes: usize,
    /// Endpoints on each.
    pub per_node: usize,
    /// Networks (`scale0`..): endpoint `i` is on network `i % networks`.
    pub networks: usize,
}

/// Network `j`: `scale<j>`, 10.(100+j).0.0/16, VNI 20000+j.
pub fn network(j: usize) -> Network {
    let subnet = format!("10.{}.0.0/16", 100 + j)
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid subnet for j < 100"));
    Network::new(&format!("scale{j}"), subnet, 20_000 + j as u32)
}

/// The address of the `n`-th simulated endpoint of a network: in its upper half, away from
/// the blocks real agents claim from the bottom.
pub fn address(j: usize, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        (100 + j) as u8,
        (128 + n / 250) as u8,
        (n % 250 + 1) as u8,
    )
}

/// Simulated node `k`: `sim<k>`, underlay 10.254.(k/250).(k%250+1) (unreachable: nothing is
/// sent there but VXLAN the simulator never answers).
pub fn node(k: usize) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: format!("sim{k}"),
        underlay: IpAddr::V4(Ipv4Addr::new(10, 254, (k / 250) as u8, (k % 250 + 1) as u8)),
        version: "sim".into(),
        wg: None,
        started_at: 0,
    }
}

/// The `i`-th endpoint of the cluster (on node `i / per_node`, network `i % networks`).
pub fn endpoint(shape: &Shape, i: usize) -> Endpoint {
    let j = i % shape.networks;
    let n = i / shape.networks;
    Endpoint::new(
        &network(j).name,
        &format!("e{i}"),
        &node(i / shape.per_node).name,
        address(j, n),
    )
}

/// A name on `scale0` outside the churn, written last: once it answers, the agent has the
/// whole cluster; it answers as long as the cluster is held.
pub fn anchor() -> Endpoint {
    Endpoint::new("scale0", "anchor", &node(0).name, address(0, 29_999))
}

/// Writes the networks (those that exist already are kept: a real container may be on one),
/// the nodes (each under a lease of `ttl` seconds) and every endpoint (under its node's lease),
/// `parallel` writes at a time; answers the leases by node.
pub async fn populate(
    store: Arc<dyn Store>,
    shape: Shape,
    ttl: i64,
    parallel: usize,
) -> Result<Vec<i64>, StoreError> {
    for j in 0..shape.networks {
        let net = network(j);
        if store.get(&net.key().to_string()).await?.is_none() {
            store.put_object(&net, None).await?;
        }
    }
    let mut leases = Vec::with_capacity(shape.nodes);
    for k in 0..shape.nodes {
        let lease = store.grant_lease(ttl).await?;
        store.put_object(&node(k), Some(lease)).await?;
        leases.push(lease);
    }
    let total = shape.nodes * shape.per_node;
    let leases_ref = &leases;
    let writes = (0..total).map(|i| {
        let store = store.clone();
        async move {
            let ep = endpoint(&shape, i);
            let lease = leases_ref[i / shape.per_node];
            store.put_object(&ep, Some(lease)).await
        }
    });
    let mut pending = futures::stream::iter(writes).buffer_unordered(parallel.max(1));
    while let Some(done) = pending.next().await {
        done?;
    }
    drop(pending);
    store.put_object(&anchor(), Some(leases[0])).await?;
    Ok(leases)
}

/// Keeps `leases` alive every `every` until the task is dropped.
pub async fn keep_alive(store: Arc<dyn Store>, leases: Vec<i64>, every: Duration) {
    loop {
        for &l in &leases {
            if let Err(e) = store.keep_alive(l).await {
                tracing::warn!(lease = l, error = %e, "keep-alive failed");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The key of endpoint `i`.
pub fn key(shape: &Shape, i: usize) -> String {
    endpoint(shape, i).key().to_string()
}
