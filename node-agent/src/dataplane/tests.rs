//! The reconciler against the simulated kernel.

use std::path::PathBuf;
use std::sync::Arc;

use shibafu_overlay::model::{Isolation, Policy};
use shibafu_overlay::netlink::{Dataplane, FakeDataplane, Scope};
use shibafu_overlay::plan::{veth_host_name, Op};

use super::*;
use crate::registry::LocalWorkloads;
use crate::testing::{endpoint, network, state_with, with_object, workload};
use shibafu_overlay::netlink::watch::Damage;

pub(super) fn reconciler(dp: &Arc<FakeDataplane>, underlay_mtu: u32) -> Reconciler {
    let cfg = HostConfig {
        node: "node1".into(),
        underlay: Some("10.0.0.1".parse().expect("ip")),
        underlay_mtu,
        bridge_netfilter_off: false,
        encrypt_all: false,
        tunnel_if: "wg-test".into(),
        control: vec![],
    };
    Reconciler::new(cfg, dp.clone(), Arc::new(LocalWorkloads::new()))
}

/// Two networks: backend (the tests' containers are on it) and other.
pub(super) fn backend_and_other() -> [shibafu_overlay::model::Network; 2] {
    [
        network("backend", "172.22.0.0/24", 4097),
        network("other", "172.23.0.0/24", 4098),
    ]
}

pub(super) fn local(entries: &[crate::registry::book::Entry]) -> Arc<LocalWorkloads> {
    Arc::new(
        entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect(),
    )
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn echoes_do_not_touch_the_kernel_and_a_settled_attach_reads_only_its_workload() {
    rt().block_on(async {
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, &[]));
        r.resync().await.expect("adopt");
        dp.add_container("/run/test/api");
        let own = endpoint("backend", "api", "node1", "172.22.0.2");
        let api = workload("api", std::slice::from_ref(&own));
        r.set_local(local(std::slice::from_ref(&api)));
        r.apply_local(&api.netns, true).await.expect("api");
        let seen = dp.observations().len();
        // The watch brings the node's own record back: same desired state, no observation.
        r.set_state(state_with(&nets, std::slice::from_ref(&own)));
        assert!(!r.reconcile_change().await.expect("echo"));
        assert_eq!(dp.observations().len(), seen, "the echo read the kernel");
        // The next attach on the settled host plans only its own workload.
        dp.add_container("/run/test/web");
        let web = workload("web", &[endpoint("backend", "web", "node1", "172.22.0.3")]);
        r.set_local(local(&[api.clone(), web.clone()]));
        let logged = dp.ops().len();
        r.apply_local(&web.netns, true).await.expect("web");
        let only_web = Scope::Workloads(vec!["/run/test/web".into()]);
        assert_eq!(dp.observations().last(), Some(&only_web));
        let ops = dp.ops();
        assert!(ops.len() > logged, "nothing applied for web");
        let veth = veth_host_name("backend", "web");
        for op in &ops[logged..] {
            let t = op.to_string();
            assert!(t.contains("/run/test/web") || t.contains(&veth), "{t}");
        }
        r.resync().await.expect("resync");
        assert_eq!(
            dp.ops().len(),
            ops.len(),
            "the fast attach left work behind"
        );
        // A remote endpoint does change the dataplane: FDB and neighbour entries appear,
        // planned against the host side as the resync read it (kept in memory since).
        let seen = dp.observations().len();
        let db = endpoint("backend", "db", "node2", "172.22.0.66");
        r.set_state(state_with(&nets, &[own.clone(), db.clone()]));
        assert!(r.reconcile_change().await.expect("remote"));
        assert_eq!(dp.observations().len(), seen);
        let st = dp.state();
        assert!(
            st.fdb.iter().any(|e| e.mac == db.mac),
            "no FDB entry for db"
        );
        assert!(st
            .neighbours
            .iter()
            .any(|n| n.ip == std::net::IpAddr::V4(db.ipv4)));
        // After a failed reconcile the next change reads the kernel again, even if unchanged.
        dp.fail_ops_matching("172.22.0.67");
        let bad = endpoint("backend", "cache", "node2", "172.22.0.67");
        r.set_state(state_with(&nets, &[own, db, bad]));
        assert!(r.reconcile_change().await.is_err());
        assert_eq!(dp.observations().len(), seen, "planned against memory");
        r.reconcile_change().await.expect_err("still failing");
        assert_eq!(
            dp.observations().len(),
            seen + 1,
            "after a failure the kernel is read"
        );
    });
}

#[test]
fn endpoints_of_a_network_nothing_here_uses_cost_no_pass_and_no_device() {
    rt().block_on(async {
        let nets = backend_and_other();
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, &[]));
        dp.add_container("/run/test/api");
        let own = endpoint("backend", "api", "node1", "172.22.0.2");
        let api = workload("api", std::slice::from_ref(&own));
        r.set_local(local(std::slice::from_ref(&api)));
        r.apply_local(&api.netns, true).await.expect("api");
        let seen = dp.observations().len();
        let far = endpoint("other", "far", "node2", "172.23.0.5");
        r.set_state(state_with(&nets, &[own.clone(), far.clone()]));
        assert!(!r.reconcile_change().await.expect("other's endpoint"));
        assert_eq!(
            dp.observations().len(),
            seen,
            "an idle network's change read the kernel"
        );
        let st = dp.state();
        assert!(!st.links.iter().any(|l| l.name == format!("sfbr{:x}", 4098)));
        assert!(
            !st.fdb.iter().any(|e| e.mac == far.mac),
            "FDB entry for an idle network"
        );
        // Its subnet stays in the firewall's cluster set all the same.
        let spec = r.firewall_part().expect("planned").expect("spec");
        assert!(spec.networks.iter().any(|n| n.name == "other"), "{spec:?}");
    });
}

#[test]
fn a_drifted_host_is_repaired_when_the_workload_pass_fails() {
    rt().block_on(async {
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, &[]));
        dp.add_container("/run/test/api");
        let api = workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")]);
        r.set_local(local(std::slice::from_ref(&api)));
        r.apply_local(&api.netns, true).await.expect("api");
        // Someone deletes the bridge by hand between resyncs.
        let bridge = format!("sfbr{:x}", 4097);
        assert!(dp.apply(&[Op::DeleteLink(bridge.clone())]).await.is_ok());
        dp.add_container("/run/test/web");
        let web = workload("web", &[endpoint("backend", "web", "node1", "172.22.0.3")]);
        r.set_local(local(&[api, web.clone()]));
        r.apply_local(&web.netns, true).await.expect("web");
        let seen = dp.observations();
        let only = vec![PathBuf::from("/run/test/web")];
        assert_eq!(
            seen[seen.len() - 2..],
            [Scope::Workloads(only.clone()), Scope::Only(only)]
        );
        assert!(dp.state().link(&bridge).is_some(), "bridge not rebuilt");
    });
}

#[test]
fn a_network_this_host_cannot_build_is_skipped_reported_and_kept_out_of_the_firewall() {
    rt().block_on(async {
        let mut v6 = network("dual", "172.24.0.0/24", 4098);
        v6.subnet6 = Some("fd00:24::/64".parse().expect("subnet6"));
        let nets = [network("backend", "172.22.0.0/24", 4097), v6];
        let dp = Arc::new(FakeDataplane::new());
        // An underlay of 1300 leaves 1250 for the overlay: too little for IPv6.
        let mut r = reconciler(&dp, 1300);
        r.set_state(state_with(&nets, &[]));
        dp.add_container("/run/test/api");
        let api = workload(
            "api",
            &[
                endpoint("dual", "api", "node1", "172.24.0.2"),
                endpoint("backend", "api", "node1", "172.22.0.2"),
            ],
        );
        r.set_local(local(std::slice::from_ref(&api)));
        r.resync().await.expect("the other networks are built");
        assert_eq!(r.skipped().len(), 1);
        assert_eq!(r.skipped()[0].name, "dual");
        assert!(
            r.skipped()[0].reason.contains("1280"),
            "{}",
            r.skipped()[0].reason
        );
        let st = dp.state();
        assert!(st.link("sfbr1001").is_some(), "backend's bridge is missing");
        assert!(st.link("sfbr1002").is_none(), "dual was built anyway");
        let fw = r.firewall_part().expect("planned").expect("spec");
        let names: Vec<&str> = fw.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["backend"]);
        // With a larger underlay the network is built and the problem is gone.
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, &[]));
        r.set_local(local(&[api]));
        r.resync().await.expect("all built");
        assert!(r.skipped().is_empty());
        assert!(dp.state().link("sfbr1002").is_some());
    });
}

#[test]
fn a_policy_on_a_network_flips_only_its_bridge_netfilter_switches() {
    rt().block_on(async {
        let backend = network("backend", "172.22.0.0/24", 4097);
        let nets = [backend.clone(), network("frontend", "172.23.0.0/24", 4098)];
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        let plain = state_with(&nets, &[]);
        r.set_state(plain.clone());
        dp.add_container("/run/test/api");
        let api = workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")]);
        r.set_local(local(std::slice::from_ref(&api)));
        r.resync().await.expect("adopt");
        let switch = |on| Op::SetBridgeNetfilter {
            name: "sfbr1001".into(),
            on,
        };
        // A policy created on backend: one op, on backend's bridge.
        let logged = dp.ops().len();
        let policy = Policy::new("db", "backend", vec![]);
        r.set_state(with_object(&plain, &policy));
        r.reconcile_change().await.expect("policy created");
        assert_eq!(dp.ops()[logged..], [switch(true)]);
        // Still policed (strict now, the policy kept): the kernel is not even read.
        let seen = dp.observations().len();
        let mut strict = backend.clone();
        strict.isolation = Isolation::Strict;
        let strict_state = state_with(&[strict, nets[1].clone()], &[]);
        r.set_state(with_object(&strict_state, &policy));
        r.reconcile_change().await.expect("isolation changed");
        assert_eq!(dp.observations().len(), seen);
        // Policy removed, isolation back to none: back to the fast path.
        r.set_state(plain);
        r.reconcile_change().await.expect("policy removed");
        assert_eq!(dp.ops()[logged..], [switch(true), switch(false)]);
        let veth = veth_host_name("backend", "api");
        let port = dp.state().link(&veth).and_then(|l| l.master.clone());
        assert_eq!(port.as_deref(), Some("sfbr1001"), "the port stayed");
    });
}

#[test]
fn the_firewall_keeps_containers_off_every_control_plane_service_known() {
    rt().block_on(async {
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let eps = [
            endpoint("backend", "api", "node1", "172.22.0.2"),
            endpoint("backend", "db", "node2", "172.22.0.3"),
        ];
        let coordinator = shibafu_overlay::model::CoordinatorRecord {
            schema: shibafu_overlay::model::SCHEMA_VERSION,
            name: "coordinator1".into(),
            api: "http://10.0.0.100:7480".into(),
            dns: None,
        };
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.cfg.control = vec![
            "10.0.0.200:2379".parse().expect("etcd"),
            "0.0.0.0:9480".parse().expect("metrics"),
        ];
        r.set_state(with_object(&state_with(&nets, &eps), &coordinator));
        r.resync().await.expect("built");
        let fw = r.firewall_part().expect("planned").expect("spec");
        let hosts: Vec<String> = fw.control.hosts.iter().map(ToString::to_string).collect();
        assert_eq!(
            hosts,
            ["10.0.0.1", "10.0.0.2", "10.0.0.100", "10.0.0.200"],
            "the nodes, the coordinator, etcd; not the wildcard"
        );
        assert_eq!(fw.control.ports, [2379, 7480, 9480]);
    });
}

#[test]
fn a_repair_reads_the_namespace_of_a_deleted_veth_and_does_nothing_after_own_changes() {
    rt().block_on(async {
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, &[]));
        dp.add_container("/run/test/api");
        let api = workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")]);
        r.set_local(local(std::slice::from_ref(&api)));
        r.resync().await.expect("adopt");
        // A deletion the agent made itself (or of something it no longer wants): nothing to do.
        let none = r
            .repair(&[Damage::Link("sfe0000000000000".into())])
            .await
            .expect("repair");
        assert_eq!(none, 0);
        assert_eq!(dp.observations().last(), Some(&Scope::Only(vec![])));
        // The container's interface gone with its host end: the repair looks into its namespace
        // and builds both again.
        dp.remove_container(std::path::Path::new("/run/test/api"));
        dp.add_container("/run/test/api");
        let veth = veth_host_name("backend", "api");
        let ops = r
            .repair(&[Damage::Link(veth.clone())])
            .await
            .expect("repair");
        assert!(ops > 0, "nothing rebuilt");
        assert_eq!(
            dp.observations().last(),
            Some(&Scope::Only(vec!["/run/test/api".into()]))
        );
        assert!(dp.state().link(&veth).is_some(), "the host end is back");
    });
}

#[test]
fn only_this_nodes_own_endpoints_coming_back_are_left_out() {
    use shibafu_overlay::state::{Change, StateChange};
    let own = StateChange::Endpoint(Change::Added(endpoint(
        "backend",
        "api",
        "node1",
        "172.22.0.2",
    )));
    let far = StateChange::Endpoint(Change::Added(endpoint(
        "backend",
        "db",
        "node2",
        "172.22.0.3",
    )));
    let moved = StateChange::Endpoint(Change::Updated {
        old: endpoint("backend", "api", "node1", "172.22.0.2"),
        new: endpoint("backend", "api", "node2", "172.22.0.2"),
    });
    assert!(actor::only_own_endpoints(
        std::slice::from_ref(&own),
        "node1"
    ));
    assert!(!actor::only_own_endpoints(&[own.clone(), far], "node1"));
    assert!(!actor::only_own_endpoints(&[moved], "node1"));
    assert!(
        !actor::only_own_endpoints(&[], "node1"),
        "a whole listing is not an echo"
    );
    let net = StateChange::Network(Change::Added(network("backend", "172.22.0.0/24", 4097)));
    assert!(!actor::only_own_endpoints(&[own, net], "node1"));
}
