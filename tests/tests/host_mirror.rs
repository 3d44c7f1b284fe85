//! Host tier: the host side kept in memory between dumps ([`HostMirror`]) against the real
//! kernel. Remote endpoints come, move between nodes and go (FDB, bridge FDB and neighbour
//! entries, IPv4 and IPv6) while every pass plans against the mirror alone; after each one a
//! fresh dump of the kernel must equal the mirror, and plan nothing more.

use std::net::IpAddr;

use shibafu_overlay::model::Endpoint;
use shibafu_overlay::netlink::{reconcile, Dataplane, NetlinkDataplane, Scope};
use shibafu_overlay::plan::{plan, DesiredHost, HostMirror, ObservedHost};
use shibafu_tests::plan::{attach, desired, ep, net, node};
use shibafu_tests::{is_root, NetnsGuard, Rng};

/// Remote endpoint `i` on fe (dual-stack) or be, on node n2 or n3.
fn remote(rng: &mut Rng, i: usize) -> Endpoint {
    let n = ["n2", "n3"][rng.below(2)];
    let mac = format!("02:00:00:44:00:{i:02x}");
    if rng.below(2) == 0 {
        let v6 = format!("fd00:44::{:x}", 16 + i);
        let v4 = format!("172.44.0.{}", 16 + i);
        ep(&format!("r{i}"), "fe", n, &v4, Some(&v6), &mac)
    } else {
        let v4 = format!("172.45.0.{}", 16 + i);
        ep(&format!("r{i}"), "be", n, &v4, None, &mac)
    }
}

/// The host side of the kernel as the mirror keeps it.
async fn dumped(dp: &NetlinkDataplane, d: &DesiredHost) -> ObservedHost {
    let mut fresh = HostMirror::default();
    fresh.refresh(dp.observe(d, &Scope::Only(vec![])).await.expect("observe"));
    fresh.host().cloned().expect("refreshed")
}

#[tokio::test]
async fn the_mirror_stays_what_the_kernel_holds_as_remote_endpoints_change() {
    if !is_root() {
        eprintln!("skipping host-tier mirror test: needs root");
        return;
    }
    let (h, c1) = (NetnsGuard::new("mir"), NetnsGuard::new("mirc"));
    h.ip(&["link", "add", "ul", "type", "veth", "peer", "name", "ulp"]);
    h.ip(&["addr", "add", "10.202.0.1/24", "dev", "ul"]);
    h.ip(&["link", "set", "ul", "up"]);
    let underlay: IpAddr = "10.202.0.1".parse().expect("ip");
    let networks = [
        net("fe", "172.44.0.0/24", Some("fd00:44::/64"), 0x4401),
        net("be", "172.45.0.0/24", None, 0x4402),
    ];
    let nodes = [
        node("h", "10.202.0.1"),
        node("n2", "10.202.0.2"),
        node("n3", "10.202.0.3"),
    ];
    let local = ep(
        "c1",
        "fe",
        "h",
        "172.44.0.2",
        Some("fd00:44::2"),
        "02:00:00:44:01:02",
    );
    let containers = [attach(&c1, &[("fe", "c1")])];
    let dp = NetlinkDataplane::in_netns(h.path());
    let mut endpoints = vec![local];
    let desired_of =
        |eps: &[Endpoint]| desired("h", Some(underlay), &networks, &nodes, eps, &containers);
    let built = desired_of(&endpoints);
    let (_, report) = reconcile(&dp, &built, &Scope::All).await.expect("build");
    assert!(report.is_ok(), "{:#?}", report.errors);

    let mut mirror = HostMirror::default();
    mirror.refresh(
        dp.observe(&built, &Scope::Only(vec![]))
            .await
            .expect("observe"),
    );
    let mut rng = Rng(0x5eed_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut entry_ops = 0;
    for step in 0..40 {
        // Endpoint i goes, or comes (again) on a network and node drawn anew.
        let i = rng.below(12);
        let id = format!("r{i}");
        let present = endpoints.iter().any(|e| e.id == id);
        endpoints.retain(|e| e.id != id);
        if !present || rng.below(3) != 0 {
            endpoints.push(remote(&mut rng, i));
        }
        let d = desired_of(&endpoints);
        let ops = plan(&d, mirror.host().expect("mirror kept"));
        let report = dp.apply(&ops).await;
        assert!(report.is_ok(), "step {step}: {:#?}", report.errors);
        mirror.record(&ops);
        entry_ops += ops.len();
        let kernel = dumped(&dp, &d).await;
        assert_eq!(
            mirror.host(),
            Some(&kernel),
            "step {step}: the mirror parted from the kernel after {ops:#?}"
        );
        let left = plan(&d, &kernel);
        assert!(
            left.is_empty(),
            "step {step}: the kernel still lacks {left:#?}"
        );
    }
    assert!(entry_ops > 40, "too few changes exercised: {entry_ops} ops");
}
