//! The agent's metrics: one part per owner (the DNS servers of the DnsActor, the store link,
//! the dataplane and firewall, health checks, policy counters), each updated by its actor with
//! atomics or a short lock of its own and read only when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shibafu_overlay::dns::DnsServer;
use shibafu_overlay::metrics::{
    ClusterGauges, Collect, CounterMap, Exposition, Histogram, HistogramMap, Registry,
    DURATION_BUCKETS,
};

/// Every part, shared with the actors that update them.
pub struct AgentMetrics {
    /// The DNS server of each network.
    pub dns: Arc<DnsServers>,
    /// The cluster state held and the etcd link.
    pub store: Arc<StoreMetrics>,
    /// Reconciles, netlink ops and firewall loads.
    pub dataplane: Arc<DataplaneMetrics>,
    /// Health check rounds and transitions.
    pub health: Arc<HealthMetrics>,
    /// Policy rule counters.
    pub policy: Arc<PolicyMetrics>,
    /// The WireGuard device and its tunnels.
    pub tunnel: Arc<crate::tunnel::metrics::TunnelMetrics>,
}

impl AgentMetrics {
    /// Empty metrics of node `node`.
    pub fn new(node: &str) -> AgentMetrics {
        AgentMetrics {
            dns: Arc::default(),
            store: Arc::new(StoreMetrics::new(node)),
            dataplane: Arc::default(),
            health: Arc::default(),
            policy: Arc::default(),
            tunnel: Arc::default(),
        }
    }

    /// A registry holding every part.
    pub fn registry(&self) -> Registry {
        let r = Registry::new();
        r.register(self.dns.clone());
        r.register(self.store.clone());
        r.register(self.dataplane.clone());
        r.register(self.health.clone());
        r.register(self.policy.clone());
        r.register(self.tunnel.clone());
        r
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running DNS server of each network (a restarted server starts its counters at 0), and
/// how long updates of the records they answer from take.
pub struct DnsServers {
    servers: Mutex<BTreeMap<String, DnsServer>>,
    updates: Histogram,
}

impl Default for DnsServers {
    fn default() -> Self {
        DnsServers {
            servers: Mutex::default(),
            updates: Histogram::new(DURATION_BUCKETS),
        }
    }
}

impl DnsServers {
    /// A cluster change reached the DNS records: re-projecting and swapping took `took`.
    pub fn updated(&self, took: Duration) {
        self.updates.observe(took);
    }

    /// `server` now serves `network`.
    pub fn insert(&self, network: &str, server: DnsServer) {
        lock(&self.servers).insert(network.to_string(), server);
    }

    /// `network` has no server any more.
    pub fn remove(&self, network: &str) {
        lock(&self.servers).remove(network);
    }
}

impl Collect for DnsServers {
    fn collect(&self, out: &mut Exposition) {
        let servers = lock(&self.servers).clone();
        for (network, server) in &servers {
            server.collect(network, out);
        }
        out.histogram(
            "shibafu_dns_update_duration_seconds",
            "Updates of this node's DNS records after cluster changes: re-projecting the networks the changes touched and swapping the new snapshot in (changes arriving together are one update).",
            [],
        )
        .add([], &self.updates.snapshot());
    }
}

/// The cluster state held and how the link to etcd fares.
pub struct StoreMetrics {
    /// Gauges of the state held.
    pub cluster: ClusterGauges,
    connected: AtomicBool,
    watch_lag: Histogram,
    watch_restarts: AtomicU64,
}

impl StoreMetrics {
    /// Empty metrics of node `node`.
    pub fn new(node: &str) -> StoreMetrics {
        StoreMetrics {
            cluster: ClusterGauges::new(Some(node.to_string())),
            connected: AtomicBool::new(false),
            watch_lag: Histogram::new(DURATION_BUCKETS),
            watch_restarts: AtomicU64::new(0),
        }
    }

    /// Whether etcd answers.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }

    /// A write of this agent was applied from the watch `took` after etcd acknowledged it.
    pub fn watch_lag(&self, took: Duration) {
        self.watch_lag.observe(took);
    }

    /// The watch listed the whole prefix again (start, or after compaction).
    pub fn relisted(&self) {
        self.watch_restarts.fetch_add(1, Relaxed);
    }
}

impl Collect for StoreMetrics {
    fn collect(&self, out: &mut Exposition) {
        self.cluster.collect(out);
        out.gauge(
            "shibafu_etcd_connected",
            "1 while etcd answers this agent, else 0.",
            [],
        )
        .add([], f64::from(u8::from(self.connected.load(Relaxed))));
        out.histogram(
            "shibafu_etcd_watch_lag_seconds",
            "Time from etcd acknowledging a write of this agent (an endpoint, health or counter record) to the agent applying that revision from its watch.",
            [],
        )
        .add([], &self.watch_lag.snapshot());
        out.counter(
            "shibafu_etcd_watch_lists_total",
            "Times the watch listed the whole cluster prefix (at start, and after compaction).",
            [],
        )
        .add([], self.watch_restarts.load(Relaxed) as f64);
        let mut skipped = out.counter(
            "shibafu_store_values_skipped_total",
            "Stored values the agent skipped as unusable (garbage, a wrong or newer schema, a value under the wrong key), by kind; each is logged.",
            ["kind"],
        );
        for (kind, n) in shibafu_overlay::state::skipped_values() {
            skipped.add([kind], n as f64);
        }
    }
}

/// Reconciles of the dataplane, the netlink ops they ran, and firewall table loads.
pub struct DataplaneMetrics {
    reconciles: HistogramMap<1>,
    errors: CounterMap<1>,
    ops_applied: AtomicU64,
    ops_failed: AtomicU64,
    firewall: HistogramMap<1>,
    firewall_errors: CounterMap<1>,
}

impl Default for DataplaneMetrics {
    fn default() -> Self {
        DataplaneMetrics {
            reconciles: HistogramMap::new(DURATION_BUCKETS),
            errors: CounterMap::default(),
            ops_applied: AtomicU64::new(0),
            ops_failed: AtomicU64::new(0),
            firewall: HistogramMap::new(DURATION_BUCKETS),
            firewall_errors: CounterMap::default(),
        }
    }
}

impl DataplaneMetrics {
    /// A reconcile of `kind` (change, resync, local) took `took`; `ok` when it succeeded.
    pub fn reconciled(&self, kind: &str, took: Duration, ok: bool) {
        self.reconciles.observe([kind], took);
        if !ok {
            self.errors.add([kind], 1);
        }
    }

    /// The reconciler's op counts since start (applied, failed).
    pub fn ops(&self, applied: u64, failed: u64) {
        self.ops_applied.store(applied, Relaxed);
        self.ops_failed.store(failed, Relaxed);
    }

    /// A load of nftables `table` (main, policy) took `took`; `ok` when it succeeded.
    pub fn firewall_loaded(&self, table: &str, took: Duration, ok: bool) {
        self.firewall.observe([table], took);
        if !ok {
            self.firewall_errors.add([table], 1);
        }
    }
}

impl Collect for DataplaneMetrics {
    fn collect(&self, out: &mut Exposition) {
        self.reconciles.write(&mut out.histogram(
            "shibafu_reconcile_duration_seconds",
            "Passes of the dataplane reconciler (plan, read the kernel, apply the difference) by kind: change (a cluster change that changed the desired dataplane), unchanged (a cluster change that left it as applied: planned, the kernel not read), resync (every 30 s), local (an attach or detach here).",
            ["kind"],
        ));
        let mut errors = out.counter(
            "shibafu_reconcile_errors_total",
            "Reconciler passes that failed (retried on the next change or resync).",
            ["kind"],
        );
        for kind in ["change", "resync", "local"] {
            errors.add([kind], 0.0);
        }
        self.errors.write(&mut errors);
        out.counter(
            "shibafu_dataplane_ops_total",
            "Netlink operations the reconciler ran (links, addresses, FDB and neighbour entries, routes), by result.",
            ["result"],
        )
        .add(["applied"], self.ops_applied.load(Relaxed) as f64)
        .add(["failed"], self.ops_failed.load(Relaxed) as f64);
        self.firewall.write(&mut out.histogram(
            "shibafu_firewall_apply_duration_seconds",
            "Loads of an nftables table: main (networks, links, NAT; replaced whole) or policy (changed element by element).",
            ["table"],
        ));
        let mut errors = out.counter(
            "shibafu_firewall_apply_errors_total",
            "nftables loads that failed (retried on the next change or check).",
            ["table"],
        );
        for table in ["main", "policy"] {
            errors.add([table], 0.0);
        }
        self.firewall_errors.write(&mut errors);
    }
}

/// Health check rounds and state transitions of this node's service instances.
#[derive(Default)]
pub struct HealthMetrics {
    checks: CounterMap<3>,
    transitions: CounterMap<3>,
}

impl HealthMetrics {
    /// A check of an instance of `service` on `network` passed or failed.
    pub fn checked(&self, network: &str, service: &str, passed: bool) {
        let result = if passed { "pass" } else { "fail" };
        self.checks.add([network, service, result], 1);
    }

    /// An instance of `service` on `network` moved to state `to`.
    pub fn moved(&self, network: &str, service: &str, to: &str) {
        self.transitions.add([network, service, to], 1);
    }
}

impl Collect for HealthMetrics {
    fn collect(&self, out: &mut Exposition) {
        self.checks.write(&mut out.counter(
            "shibafu_health_checks_total",
            "Health checks run on this node, by network, service and result (pass, fail).",
            ["network", "service", "result"],
        ));
        self.transitions.write(&mut out.counter(
            "shibafu_health_transitions_total",
            "Health state changes of instances checked on this node, by the state entered (healthy, unhealthy, starting).",
            ["network", "service", "to"],
        ));
    }
}

/// The latest reading of the policy rule counters of this node.
#[derive(Default)]
pub struct PolicyMetrics {
    latest: Mutex<Vec<([String; 3], u64)>>,
}

impl PolicyMetrics {
    /// The counters now read: (policy, rule, verdict) and packets.
    pub fn read(&self, counts: Vec<([String; 3], u64)>) {
        *lock(&self.latest) = counts;
    }
}

impl Collect for PolicyMetrics {
    fn collect(&self, out: &mut Exposition) {
        let mut family = out.counter(
            "shibafu_policy_packets_total",
            "Packets the rules of each policy matched on this node (first packets of connections), read every 2 s; rule is its number in the policy, or isolation for drops of isolated endpoints no rule allowed.",
            ["policy", "rule", "verdict"],
        );
        for (labels, n) in lock(&self.latest).iter() {
            family.add(labels.each_ref().map(String::as_str), *n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::dns::{DnsServer, ServerConfig, Snapshot};

    use super::*;

    #[test]
    fn every_part_writes_its_families_without_conflicts() {
        let m = AgentMetrics::new("node1");
        let snapshot = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::default()));
        m.dns.insert(
            "frontend",
            DnsServer::new(snapshot, None, ServerConfig::default()),
        );
        m.store.set_connected(true);
        m.store.watch_lag(Duration::from_millis(3));
        m.dataplane
            .reconciled("local", Duration::from_millis(20), false);
        m.dataplane.ops(5, 1);
        m.dataplane
            .firewall_loaded("main", Duration::from_millis(30), true);
        m.health.checked("frontend", "web", true);
        m.health.moved("frontend", "web", "healthy");
        m.policy
            .read(vec![(["db".into(), "1".into(), "deny".into()], 7)]);
        let mut out = Exposition::new();
        for part in [
            &*m.dns as &dyn Collect,
            &*m.store,
            &*m.dataplane,
            &*m.health,
            &*m.policy,
        ] {
            part.collect(&mut out);
        }
        assert!(out.refused().is_empty(), "{:?}", out.refused());
        let text = out.render();
        for line in [
            "shibafu_etcd_connected 1",
            "shibafu_etcd_watch_lag_seconds_count 1",
            "shibafu_reconcile_errors_total{kind=\"local\"} 1",
            "shibafu_reconcile_errors_total{kind=\"change\"} 0",
            "shibafu_dataplane_ops_total{result=\"failed\"} 1",
            "shibafu_firewall_apply_duration_seconds_count{table=\"main\"} 1",
            "shibafu_health_checks_total{network=\"frontend\",service=\"web\",result=\"pass\"} 1",
            "shibafu_health_transitions_total{network=\"frontend\",service=\"web\",to=\"healthy\"} 1",
            "shibafu_policy_packets_total{policy=\"db\",rule=\"1\",verdict=\"deny\"} 7",
            "shibafu_dns_prebuilt_answers_total{network=\"frontend\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        m.dns.remove("frontend");
        let mut out = Exposition::new();
        m.dns.collect(&mut out);
        let text = out.render();
        assert!(
            !text.contains("frontend"),
            "a removed server's series stayed:\n{text}"
        );
        assert!(
            text.contains("shibafu_dns_update_duration_seconds_count 0"),
            "{text}"
        );
    }
}
