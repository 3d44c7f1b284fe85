//! Building the desired state from the model and local attachments.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::model::{Isolation, Policy};

#[test]
fn builds_networks_with_bridge_vxlan_gateway_and_mtu() {
    let d = Cluster::new().desired();
    let names: Vec<&str> = d.networks.iter().map(|n| n.bridge.as_str()).collect();
    assert_eq!(names, ["sfbr1000", "sfbr1001"]);
    let fe = d.network("fe").expect("fe");
    assert_eq!(fe.mtu, 1450);
    assert_eq!(fe.gateway4.to_string(), "172.21.0.1/24");
    assert_eq!(
        fe.gateway6.map(|g| g.to_string()).as_deref(),
        Some("fd00:21::1/64")
    );
    assert_eq!(fe.mac, gateway_mac(4096));
    let vx = fe.vxlan.as_ref().expect("vxlan");
    assert_eq!(
        (vx.name.as_str(), vx.vni, vx.port),
        ("sfvx1000", 4096, VXLAN_PORT)
    );
    assert_eq!(vx.local, Some("10.0.0.1".parse::<IpAddr>().expect("ip")));
    assert!(d.has_ipv6());
}

#[test]
fn networks_policies_govern_call_netfilter_and_the_others_do_not() {
    let mut c = Cluster::new();
    let netfilter = |c: &Cluster| -> Vec<(String, bool)> {
        let d = c.desired();
        d.networks
            .into_iter()
            .map(|n| (n.name, n.netfilter))
            .collect()
    };
    assert_eq!(netfilter(&c), [("fe".into(), false), ("be".into(), false)]);
    let policies = [Policy::new("db", "be", vec![])];
    c.policed = crate::policy::policed_networks(&c.networks, &policies);
    assert_eq!(netfilter(&c), [("fe".into(), false), ("be".into(), true)]);
    c.networks[0].isolation = Isolation::Strict;
    c.policed = crate::policy::policed_networks(&c.networks, &[]);
    assert_eq!(netfilter(&c), [("fe".into(), true), ("be".into(), false)]);
}

#[test]
fn network_mtu_overrides_underlay() {
    let mut c = Cluster::new();
    c.networks[1].mtu = Some(1400);
    let d = c.desired();
    assert_eq!(d.network("be").expect("be").mtu, 1400);
    let eth0 = d
        .endpoints
        .iter()
        .find(|e| e.network == "be")
        .expect("be endpoint");
    assert_eq!(eth0.mtu, 1400);
}

#[test]
fn single_host_mode_has_no_vxlan_and_no_remotes() {
    let c = Cluster::new();
    let d = DesiredHost::build(&HostInputs {
        underlay: None,
        ..c.inputs()
    })
    .expect("desired");
    assert!(d.networks.iter().all(|n| n.vxlan.is_none()));
    let ops = plan(&d, &kernel_with(&["/run/netns/api", "/run/netns/cache"]));
    assert!(!ops.iter().any(|o| matches!(
        o,
        Op::CreateVxlan { .. } | Op::AddFdb { .. } | Op::SetNeigh { .. }
    )));
}

#[test]
fn local_endpoints_get_names_addresses_and_one_default_route() {
    let d = Cluster::new().desired();
    let api: Vec<&DesiredEndpoint> = d
        .endpoints
        .iter()
        .filter(|e| e.netns.ends_with("api"))
        .collect();
    assert_eq!(api.len(), 2);
    let (eth0, eth1) = (api[0], api[1]);
    assert_eq!(
        (eth0.ifname.as_str(), eth0.network.as_str()),
        ("eth0", "be")
    );
    assert_eq!(eth0.host_ifname, veth_host_name("be", "n1-api"));
    assert_eq!(eth0.bridge, "sfbr1001");
    assert_eq!(eth0.ipv4.to_string(), "172.22.0.2/24");
    assert_eq!(eth0.default4, Some(Ipv4Addr::new(172, 22, 0, 1)));
    assert_eq!(
        eth1.default4, None,
        "default route via the first network only"
    );
    // be has no IPv6, so IPv6 default goes via the first network that has it.
    assert_eq!(eth0.default6, None);
    assert_eq!(eth1.default6, Some("fd00:21::1".parse().expect("v6")));
    assert_eq!(
        eth1.ipv6.map(|a| a.to_string()).as_deref(),
        Some("fd00:21::2/64")
    );
    assert_ne!(eth0.host_ifname, eth1.host_ifname);
}

#[test]
fn remotes_come_from_other_nodes_with_their_vtep() {
    let d = Cluster::new().desired();
    let fe = d
        .network("fe")
        .and_then(|n| n.vxlan.as_ref())
        .expect("fe vxlan");
    assert_eq!(fe.remotes.len(), 1);
    let web = &fe.remotes[0];
    assert_eq!(web.mac.to_string(), "02:00:00:00:02:03");
    assert_eq!(web.vtep, "10.0.0.2".parse::<IpAddr>().expect("ip"));
    assert_eq!(web.ipv6, Some("fd00:21::3".parse().expect("v6")));
    let be = d
        .network("be")
        .and_then(|n| n.vxlan.as_ref())
        .expect("be vxlan");
    assert_eq!(
        be.remotes
            .iter()
            .map(|r| r.vtep.to_string())
            .collect::<Vec<_>>(),
        ["10.0.0.3"]
    );
}

#[test]
fn bad_remote_records_are_skipped_not_fatal() {
    let mut c = Cluster::new();
    c.endpoints
        .push(ep("gone", "fe", "node9", "172.21.0.9", "02:00:00:00:09:09")); // no node record
    c.endpoints.push(ep(
        "badmac",
        "fe",
        "node2",
        "172.21.0.10",
        "01:00:5e:00:00:0a",
    ));
    c.endpoints.push(ep(
        "outside",
        "fe",
        "node2",
        "10.9.9.9",
        "02:00:00:00:02:0a",
    ));
    c.endpoints.push(ep(
        "dupmac",
        "fe",
        "node3",
        "172.21.0.11",
        "02:00:00:00:02:03",
    ));
    c.endpoints.push(ep(
        "dupip",
        "fe",
        "node3",
        "172.21.0.4",
        "02:00:00:00:03:0b",
    )); // local cache's IP
    c.endpoints
        .push(ep("gwip", "fe", "node3", "172.21.0.1", "02:00:00:00:03:0c"));
    c.endpoints.push(ep(
        "nonet",
        "zz",
        "node2",
        "172.21.0.12",
        "02:00:00:00:02:0c",
    ));
    c.nodes.push(node("node6", "fd00::6"));
    c.endpoints.push(ep(
        "v6vtep",
        "fe",
        "node6",
        "172.21.0.13",
        "02:00:00:00:06:0d",
    ));
    let d = c.desired();
    let fe = d
        .network("fe")
        .and_then(|n| n.vxlan.as_ref())
        .expect("fe vxlan");
    assert_eq!(
        fe.remotes
            .iter()
            .map(|r| r.mac.to_string())
            .collect::<Vec<_>>(),
        ["02:00:00:00:02:03"]
    );
}

#[test]
fn local_inconsistencies_fail_the_build() {
    let check = |f: &dyn Fn(&mut Cluster), want: &dyn Fn(&PlanError) -> bool| {
        let mut c = Cluster::new();
        f(&mut c);
        let err = DesiredHost::build(&c.inputs()).expect_err("must fail");
        assert!(want(&err), "unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    };
    check(
        &|c| c.containers[1].interfaces[0].endpoint_id = "zz".into(),
        &|e| matches!(e, PlanError::UnknownEndpoint { .. }),
    );
    check(&|c| c.endpoints[2].node = "node2".into(), &|e| {
        matches!(e, PlanError::ForeignEndpoint { .. })
    });
    check(
        &|c| c.endpoints[2].mac = "01:00:5e:00:00:01".parse().expect("mac"),
        &|e| matches!(e, PlanError::InvalidMac { .. }),
    );
    check(
        &|c| c.endpoints[2].ipv4 = "10.1.1.1".parse().expect("ip"),
        &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }),
    );
    check(
        &|c| c.endpoints[2].ipv4 = "172.21.0.1".parse().expect("ip"),
        &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }),
    );
    check(
        &|c| c.endpoints[0].ipv6 = Some("fd00::9".parse().expect("v6")),
        &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }),
    );
    check(
        &|c| c.containers[0].interfaces[1].ifname = "eth0".into(),
        &|e| matches!(e, PlanError::DuplicateIfname { .. }),
    );
    check(
        &|c| c.containers[0].interfaces[1].ifname = "a-very-long-name0".into(),
        &|e| matches!(e, PlanError::InvalidIfname(_)),
    );
    check(
        &|c| {
            let dup = c.containers[0].interfaces[1].clone();
            c.containers[1].interfaces.push(dup)
        },
        &|e| {
            matches!(
                e,
                PlanError::DuplicateAttachment { .. } | PlanError::DuplicateIfname { .. }
            )
        },
    );
    check(
        &|c| {
            let dup = c.containers[1].clone();
            c.containers.push(dup)
        },
        &|e| matches!(e, PlanError::DuplicateAttachment { .. }),
    );
}

#[test]
fn a_network_this_host_cannot_build_is_skipped_and_the_others_go_on() {
    let c = Cluster::new();
    // fe carries IPv6: an overlay MTU of 1250 is below its 1280; be is IPv4 only and fine.
    let d = DesiredHost::build(&HostInputs {
        underlay_mtu: 1300,
        ..c.inputs()
    })
    .expect("the other networks still build");
    assert_eq!(
        d.networks
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["be"]
    );
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].name, "fe");
    assert!(
        d.skipped[0].reason.contains("1250") && d.skipped[0].reason.contains("1280"),
        "{}",
        d.skipped[0].reason
    );
    let ifs: Vec<(&str, &str)> = d
        .endpoints
        .iter()
        .map(|e| (e.network.as_str(), e.ifname.as_str()))
        .collect();
    assert_eq!(ifs, [("be", "eth0")], "interfaces on fe are left out");
    assert_eq!(
        d.endpoints[0].default4,
        Some("172.22.0.1".parse().expect("ip"))
    );

    let mut c = Cluster::new();
    c.networks[0].subnet6 = None;
    c.endpoints[1].ipv6 = None;
    let d = DesiredHost::build(&HostInputs {
        underlay_mtu: 1300,
        ..c.inputs()
    })
    .expect("v4 only accepts 1250");
    assert!(d.skipped.is_empty());

    let mut c = Cluster::new();
    c.networks[1].vni = c.networks[0].vni;
    c.networks[1].zone = "bad..zone".into();
    c.networks.push(net("zdup", "172.30.0.0/24", 4096));
    c.containers[1].interfaces[0].network = "gone".into();
    let d = DesiredHost::build(&c.inputs()).expect("builds");
    let skipped: Vec<(&str, bool)> = d
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason.contains("VNI 4096")))
        .collect();
    assert_eq!(skipped, [("be", false), ("zdup", true)]);
    assert!(
        d.skipped[0].reason.contains("zone"),
        "{}",
        d.skipped[0].reason
    );
    assert_eq!(d.network("fe").map(|n| n.vxlan.is_some()), Some(true));
    assert!(
        d.endpoints
            .iter()
            .all(|e| e.netns.to_str() != Some("/run/netns/cache")),
        "an interface on an unknown network is left out"
    );
    let mut c = Cluster::new();
    c.networks.push(net("inside", "172.21.0.128/25", 4200));
    let d = DesiredHost::build(&c.inputs()).expect("builds");
    assert_eq!(d.skipped.len(), 1);
    assert!(
        d.skipped[0].reason.contains("overlaps network \"fe\""),
        "{}",
        d.skipped[0].reason
    );
}

#[test]
fn a_network_nothing_here_uses_is_idle_no_device_no_remote() {
    let mut c = Cluster::new();
    c.containers
        .retain(|k| k.netns.as_path() == std::path::Path::new("/run/netns/cache"));
    c.in_use = networks_in_use(&c.containers, &[], &[], &[], &[]);
    let d = c.desired();
    let names: Vec<&str> = d.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["fe"]);
    assert_eq!(d.idle, ["be"]);
    assert!(
        d.skipped.is_empty(),
        "idle is not a problem: {:?}",
        d.skipped
    );
    let vx = d
        .network("fe")
        .and_then(|n| n.vxlan.as_ref())
        .expect("vxlan");
    assert_eq!(vx.remotes.len(), 1, "fe's remote only, not be's n3-db");

    let links = [crate::model::Link::new("be", "fe")];
    c.in_use = networks_in_use(&c.containers, &links, &[], &[], &[]);
    let d = c.desired();
    assert_eq!(
        d.networks.len(),
        2,
        "a linked network is routed to from here"
    );
    assert!(d.idle.is_empty());
}

#[test]
fn a_namespaces_interfaces_are_found_by_its_path() {
    let d = Cluster::new().desired();
    let ifs = |netns: &str| -> Vec<&str> {
        d.endpoints_in(std::path::Path::new(netns))
            .iter()
            .map(|e| e.ifname.as_str())
            .collect()
    };
    assert_eq!(ifs("/run/netns/api"), ["eth0", "eth1"]);
    assert_eq!(ifs("/run/netns/cache"), ["eth0"]);
    assert!(ifs("/run/netns/b").is_empty(), "between the two");
    assert!(ifs("/run/netns/zzz").is_empty(), "after the last");
    assert!(ifs("/run").is_empty(), "a prefix of both");
    let only = crate::netlink::Scope::Only(vec![
        "/run/netns/cache".into(),
        "/run/netns/gone".into(),
        "/run/netns/cache".into(),
    ]);
    assert_eq!(
        only.select(&d),
        [std::path::Path::new("/run/netns/cache")],
        "known namespaces of the scope, once each"
    );
}
