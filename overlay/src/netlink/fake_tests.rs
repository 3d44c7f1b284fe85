//! The simulated kernel against the planner: convergence, failures, scopes.

use super::*;
use crate::netlink::reconcile;
use crate::plan::DesiredHost;

fn desired() -> DesiredHost {
    let c = crate::plan::tests_support::cluster();
    DesiredHost::build(&c.inputs()).expect("desired")
}

#[tokio::test]
async fn reconcile_converges_then_does_nothing() {
    let dp = FakeDataplane::new();
    dp.add_container("/run/netns/api");
    dp.add_container("/run/netns/cache");
    let d = desired();
    let (ops, report) = reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.applied, ops.len());
    let (ops, report) = reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    assert!(ops.is_empty() && report.applied == 0);
}

#[tokio::test]
async fn failures_are_collected_and_the_rest_still_applies() {
    let dp = FakeDataplane::new();
    dp.add_container("/run/netns/api");
    dp.fail_ops_matching("sfbr1001");
    let d = desired();
    let (ops, report) = reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    // The cache namespace does not exist: its veth fails too, with a clear message.
    assert!(report
        .errors
        .iter()
        .any(|e| e.error.to_string().contains("/run/netns/cache not found")));
    let cache_veth = crate::plan::veth_host_name("fe", "n1-cache");
    for e in &report.errors {
        let t = e.op.to_string();
        assert!(
            t.contains("1001") || t.contains(&cache_veth) || t.contains("/run/netns/cache"),
            "unexpected failure: {t}"
        );
    }
    assert_eq!(report.applied + report.errors.len(), ops.len());
    assert!(
        dp.state().link("sfbr1000").is_some(),
        "other networks were still built"
    );
    assert_eq!(dp.ops(), ops);
}

#[tokio::test]
async fn a_vanished_container_takes_its_veth_with_it() {
    let dp = FakeDataplane::new();
    dp.add_container("/run/netns/api");
    dp.add_container("/run/netns/cache");
    let d = desired();
    reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    let before = dp.state().links.len();
    dp.remove_container(std::path::Path::new("/run/netns/cache"));
    assert_eq!(dp.state().links.len(), before - 1);
}

#[tokio::test]
async fn a_scoped_reconcile_looks_only_at_its_containers() {
    let dp = FakeDataplane::new();
    dp.add_container("/run/netns/api");
    dp.add_container("/run/netns/cache");
    let d = desired();
    reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    let cache_eth0 = LinkRef::Container {
        netns: "/run/netns/cache".into(),
        name: "eth0".into(),
    };
    let addr = "172.21.0.4/24".parse().expect("net");
    let report = dp
        .apply(&[Op::DelAddress {
            link: cache_eth0.clone(),
            addr,
        }])
        .await;
    assert!(report.is_ok());

    let api_only = Scope::Only(vec!["/run/netns/api".into()]);
    let (ops, _) = reconcile(&dp, &d, &api_only).await.expect("reconcile");
    assert!(
        ops.is_empty(),
        "the cache container is out of scope: {ops:#?}"
    );
    let cache_only = Scope::Only(vec!["/run/netns/cache".into()]);
    let (ops, report) = reconcile(&dp, &d, &cache_only).await.expect("reconcile");
    assert_eq!(
        ops,
        vec![Op::AddAddress {
            link: cache_eth0,
            addr
        }]
    );
    assert!(report.is_ok());
}

#[tokio::test]
async fn a_workload_reconcile_plans_only_its_veth_and_converges() {
    let dp = FakeDataplane::new();
    dp.add_container("/run/netns/api");
    dp.add_container("/run/netns/cache");
    let d = desired();
    // The host side and api first; then cache joins with only its own workload read.
    let mut without_cache = d.clone();
    without_cache
        .endpoints
        .retain(|e| e.netns != std::path::Path::new("/run/netns/cache"));
    reconcile(&dp, &without_cache, &Scope::All)
        .await
        .expect("reconcile");
    let before = dp.state().links.len();
    let cache = Scope::Workloads(vec!["/run/netns/cache".into()]);
    let (ops, report) = reconcile(&dp, &d, &cache).await.expect("reconcile");
    assert!(report.is_ok(), "{:?}", report.errors);
    let cache_veth = crate::plan::veth_host_name("fe", "n1-cache");
    assert!(matches!(&ops[0], Op::CreateVeth { host, .. } if *host == cache_veth));
    for op in &ops {
        let t = op.to_string();
        assert!(
            t.contains(&cache_veth) || t.contains("/run/netns/cache"),
            "a workload reconcile touched something else: {t}"
        );
    }
    assert_eq!(dp.state().links.len(), before + 1);
    // Nothing is left for a full resync, and a second workload reconcile is empty.
    let (ops, _) = reconcile(&dp, &d, &Scope::All).await.expect("reconcile");
    assert!(ops.is_empty(), "{ops:#?}");
    let (ops, _) = reconcile(&dp, &d, &cache).await.expect("reconcile");
    assert!(ops.is_empty(), "{ops:#?}");
    // A veth of the right name whose peer is gone is replaced.
    dp.remove_container(std::path::Path::new("/run/netns/cache"));
    dp.add_container("/run/netns/cache");
    let (ops, report) = reconcile(&dp, &d, &cache).await.expect("reconcile");
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(ops.iter().any(|o| matches!(o, Op::CreateVeth { .. })));
}
