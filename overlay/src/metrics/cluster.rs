//! Gauges of the cluster as one process sees it (its latest `ClusterState`), computed at
//! scrape time: nodes, endpoints per network (and those of this node), service instances by
//! health, the etcd revision held.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::expose::Exposition;
use super::registry::Collect;
use crate::model::HealthState;
use crate::state::ClusterState;

/// The state a process holds, published by its owner (a pointer swap per change).
pub struct ClusterGauges {
    state: ArcSwap<ClusterState>,
    node: Option<String>,
}

impl ClusterGauges {
    /// Gauges of the state published into them, seen from node `node` (an agent), or from no
    /// node (a coordinator: no local endpoints).
    pub fn new(node: Option<String>) -> ClusterGauges {
        ClusterGauges {
            state: ArcSwap::from_pointee(ClusterState::new()),
            node,
        }
    }

    /// Takes the state now held.
    pub fn publish(&self, state: Arc<ClusterState>) {
        self.state.store(state);
    }
}

impl Collect for ClusterGauges {
    fn collect(&self, out: &mut Exposition) {
        write_cluster(&self.state.load(), self.node.as_deref(), out);
    }
}

/// Writes the gauges of `state`; with `node`, also the endpoints on that node.
pub fn write_cluster(state: &ClusterState, node: Option<&str>, out: &mut Exposition) {
    out.gauge(
        "shibafu_cluster_revision",
        "etcd revision of the cluster state this process holds.",
        [],
    )
    .add([], state.revision() as f64);
    out.gauge(
        "shibafu_cluster_nodes",
        "Nodes registered in the cluster (their agents hold a lease).",
        [],
    )
    .add([], state.nodes().len() as f64);
    let mut all: BTreeMap<&str, (u64, u64)> = state
        .networks()
        .keys()
        .map(|n| (n.as_str(), (0, 0)))
        .collect();
    let mut instances: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for e in state.endpoints().values() {
        let counts = all.entry(e.network.as_str()).or_default();
        counts.0 += 1;
        if node == Some(e.node.as_str()) {
            counts.1 += 1;
        }
        let Some(service) = &e.service else { continue };
        let checked = e.health.is_some()
            || state
                .services()
                .get(&(e.network.clone(), service.clone()))
                .is_some_and(|s| s.health.is_some());
        let health = state.health().get(&(e.network.clone(), e.id.clone()));
        let standing = match (checked, health.map(|h| h.state)) {
            (false, _) => "unchecked",
            (true, Some(HealthState::Healthy)) => "healthy",
            (true, Some(HealthState::Unhealthy)) => "unhealthy",
            (true, Some(HealthState::Starting) | None) => "starting",
        };
        *instances
            .entry((e.network.as_str(), service.as_str(), standing))
            .or_default() += 1;
    }
    let mut endpoints = out.gauge(
        "shibafu_network_endpoints",
        "Endpoints of each network in the cluster.",
        ["network"],
    );
    for (network, (n, _)) in &all {
        endpoints.add([network], *n as f64);
    }
    if node.is_some() {
        let mut local = out.gauge(
            "shibafu_network_local_endpoints",
            "Endpoints of each network on this node.",
            ["network"],
        );
        for (network, (_, n)) in &all {
            local.add([network], *n as f64);
        }
    }
    let mut by_state = out.gauge(
        "shibafu_service_instances",
        "Service instances by health as their nodes report it (unchecked: no health check).",
        ["network", "service", "state"],
    );
    for ((network, service, standing), n) in &instances {
        by_state.add([network, service, standing], *n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Network, Object};
    use crate::store::{ClusterChange, KeyValue};

    fn kv(o: &impl Object) -> KeyValue {
        KeyValue {
            key: o.key().to_string(),
            value: serde_json::to_vec(o).expect("json"),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn endpoints_are_counted_per_network_and_node() {
        let net = Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 7);
        let empty = Network::new("empty", "172.22.0.0/24".parse().expect("net"), 8);
        let mut web = Endpoint::new(
            "frontend",
            "web",
            "node1",
            "172.21.0.2".parse().expect("ip"),
        );
        web.service = Some("www".into());
        let api = Endpoint::new(
            "frontend",
            "api",
            "node2",
            "172.21.0.3".parse().expect("ip"),
        );
        let mut state = ClusterState::new();
        state.apply(&ClusterChange::Snapshot {
            kvs: vec![kv(&net), kv(&empty), kv(&web), kv(&api)],
            revision: 9,
        });
        let mut out = Exposition::new();
        write_cluster(&state, Some("node1"), &mut out);
        let text = out.render();
        for line in [
            "shibafu_cluster_revision 9",
            "shibafu_network_endpoints{network=\"frontend\"} 2",
            "shibafu_network_endpoints{network=\"empty\"} 0",
            "shibafu_network_local_endpoints{network=\"frontend\"} 1",
            "shibafu_service_instances{network=\"frontend\",service=\"www\",state=\"unchecked\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let mut out = Exposition::new();
        write_cluster(&state, None, &mut out);
        assert!(!out.render().contains("local_endpoints"));
    }
}
