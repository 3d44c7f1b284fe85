//! Planning against the simulated kernel: order, idempotence, minimal changes, teardown.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::netlink::simulate;

#[test]
fn plan_from_scratch_is_ordered() {
    let mut c = Cluster::new();
    c.networks.truncate(1);
    c.networks[0].subnet6 = None;
    c.endpoints.retain(|e| e.network == "fe");
    c.endpoints.iter_mut().for_each(|e| e.ipv6 = None);
    c.containers = vec![container("/run/netns/cache", &[("fe", "n1-cache", "eth0")])];
    let d = c.desired();
    let ops = plan(&d, &kernel_with(&["/run/netns/cache"]));
    let host = |n: &str| LinkRef::Host(n.into());
    let inner = LinkRef::Container {
        netns: "/run/netns/cache".into(),
        name: "eth0".into(),
    };
    let veth = veth_host_name("fe", "n1-cache");
    let web_mac: MacAddr = "02:00:00:00:02:03".parse().expect("mac");
    let vtep: IpAddr = "10.0.0.2".parse().expect("ip");
    let expected = vec![
        Op::EnableForwarding(IpFamily::V4),
        Op::CreateBridge {
            name: "sfbr1000".into(),
            mac: gateway_mac(4096),
            mtu: 1450,
        },
        Op::AddAddress {
            link: host("sfbr1000"),
            addr: "172.21.0.1/24".parse().expect("net"),
        },
        Op::SetUp(host("sfbr1000")),
        Op::CreateVxlan {
            name: "sfvx1000".into(),
            vni: 4096,
            local: Some("10.0.0.1".parse().expect("ip")),
            port: 4789,
            mtu: 1450,
        },
        Op::SetMaster {
            name: "sfvx1000".into(),
            master: "sfbr1000".into(),
        },
        Op::SetPortFlags {
            name: "sfvx1000".into(),
            neigh_suppress: true,
            learning: false,
        },
        Op::SetUp(host("sfvx1000")),
        Op::AddFdb {
            vxlan: "sfvx1000".into(),
            mac: web_mac,
            vtep,
        },
        Op::AddPortFdb {
            port: "sfvx1000".into(),
            mac: web_mac,
        },
        Op::SetNeigh {
            bridge: "sfbr1000".into(),
            ip: "172.21.0.3".parse().expect("ip"),
            mac: web_mac,
        },
        Op::CreateVeth {
            host: veth.clone(),
            netns: "/run/netns/cache".into(),
            peer: "eth0".into(),
            peer_mac: "02:00:00:00:01:04".parse().expect("mac"),
            host_mac: gateway_mac(4096),
            mtu: 1450,
            peer_ipv6: false,
        },
        Op::SetMaster {
            name: veth.clone(),
            master: "sfbr1000".into(),
        },
        Op::SetUp(host(&veth)),
        Op::AddAddress {
            link: inner.clone(),
            addr: "172.21.0.4/24".parse().expect("net"),
        },
        Op::SetUp(inner.clone()),
        Op::SetDefaultRoute {
            link: inner,
            gateway: "172.21.0.1".parse().expect("ip"),
        },
    ];
    assert_eq!(ops, expected);
}

#[test]
fn converges_and_second_plan_is_empty() {
    let d = Cluster::new().desired();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    let ops = converge(&d, &mut k);
    assert!(ops.contains(&Op::EnableForwarding(IpFamily::V6)));
    assert_eq!(
        k.links.len(),
        2 + 2 + 3,
        "two bridges, two vxlans, three veths"
    );
    assert!(
        k.fdb.iter().all(|f| f.mac != MacAddr::ZERO),
        "no flooding entry"
    );
    assert_eq!(k.neighbours.len(), 3, "web v4+v6, db v4");
    let api = k
        .container(std::path::Path::new("/run/netns/api"))
        .expect("api");
    assert_eq!(
        api.default4,
        vec![(Ipv4Addr::new(172, 22, 0, 1), "eth0".to_string())]
    );
    assert_eq!(api.default6.len(), 1);
    assert_eq!(api.default6[0].1, "eth1");
}

#[test]
fn changes_touch_only_what_changed() {
    let mut c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);

    // A remote endpoint goes away: exactly its three entries go.
    c.endpoints.retain(|e| e.id != "n3-db");
    let ops = converge(&c.desired(), &mut k);
    let db_mac: MacAddr = "02:00:00:00:03:05".parse().expect("mac");
    assert_eq!(
        ops,
        vec![
            Op::DelFdb {
                vxlan: "sfvx1001".into(),
                mac: db_mac,
                vtep: "10.0.0.3".parse().expect("ip")
            },
            Op::DelPortFdb {
                port: "sfvx1001".into(),
                mac: db_mac
            },
            Op::DelNeigh {
                bridge: "sfbr1001".into(),
                ip: "172.22.0.5".parse().expect("ip")
            },
        ]
    );

    // A remote endpoint moves to another node: only its FDB destination changes.
    c.endpoints
        .iter_mut()
        .filter(|e| e.id == "n2-web")
        .for_each(|e| e.node = "node3".into());
    let ops = converge(&c.desired(), &mut k);
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert!(matches!(&ops[0], Op::DelFdb { vtep, .. } if vtep.to_string() == "10.0.0.2"));
    assert!(matches!(&ops[1], Op::AddFdb { vtep, .. } if vtep.to_string() == "10.0.0.3"));

    // A new local container: only its veth and configuration.
    c.endpoints.push(ep(
        "n1-new",
        "be",
        "node1",
        "172.22.0.7",
        "02:00:00:00:01:07",
    ));
    c.containers
        .push(container("/run/netns/new", &[("be", "n1-new", "eth0")]));
    k.containers
        .push(kernel_with(&["/run/netns/new"]).containers.remove(0));
    let ops = converge(&c.desired(), &mut k);
    assert!(matches!(ops[0], Op::CreateVeth { .. }), "{ops:#?}");
    assert!(ops.iter().all(|o| !o.is_delete()));
    assert_eq!(ops.len(), 6);
}

#[test]
fn stale_links_are_deleted_veths_first_and_foreign_links_ignored() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    simulate(
        &mut k,
        &Op::CreateBridge {
            name: "sfbr9999".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            mtu: 1500,
        },
    )
    .expect("bridge");
    simulate(
        &mut k,
        &Op::CreateVxlan {
            name: "sfvx9999".into(),
            vni: 9,
            local: Some("10.0.0.1".parse().expect("ip")),
            port: 4789,
            mtu: 1500,
        },
    )
    .expect("vxlan");
    let mut foreign = k.links[0].clone();
    foreign.name = "docker0".into();
    foreign.index = 999;
    k.links.push(foreign);
    let ops = plan(&c.desired(), &k);
    assert_eq!(
        ops,
        vec![
            Op::DeleteLink("sfvx9999".into()),
            Op::DeleteLink("sfbr9999".into())
        ]
    );
}

#[test]
fn teardown_removes_everything_in_order() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    let ops = converge(&DesiredHost::default(), &mut k);
    assert!(ops.iter().all(Op::is_delete), "{ops:#?}");
    let kinds: Vec<usize> = ops
        .iter()
        .map(|o| match o {
            Op::DeleteLink(n) if n.starts_with("sfe") => 0,
            Op::DeleteLink(n) if n.starts_with("sfvx") => 1,
            _ => 2,
        })
        .collect();
    assert!(
        kinds.windows(2).all(|w| w[0] <= w[1]),
        "veths, then vxlans, then bridges: {ops:#?}"
    );
    assert!(k.links.is_empty() && k.fdb.is_empty() && k.neighbours.is_empty());
    assert!(k
        .containers
        .iter()
        .all(|c| c.links.is_empty() && c.default4.is_empty()));
}

#[test]
fn wrong_vxlan_parameters_recreate_the_device_and_its_entries() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    for l in &mut k.links {
        if l.name == "sfvx1000" {
            l.kind = LinkKind::Vxlan {
                vni: 4096,
                local: Some("10.0.0.1".parse().expect("ip")),
                port: 4789,
                learning: true,
            };
        }
    }
    let ops = converge(&c.desired(), &mut k);
    assert_eq!(ops[0], Op::DeleteLink("sfvx1000".into()));
    assert!(ops.contains(&Op::SetPortFlags {
        name: "sfvx1000".into(),
        neigh_suppress: true,
        learning: false
    }));
    assert!(ops
        .iter()
        .any(|o| matches!(o, Op::AddFdb { vxlan, .. } if vxlan == "sfvx1000")));
    assert!(ops
        .iter()
        .any(|o| matches!(o, Op::AddPortFdb { port, .. } if port == "sfvx1000")));
    assert!(
        !ops.iter().any(|o| matches!(o, Op::SetNeigh { .. })),
        "neighbours live on the bridge, untouched"
    );
}

#[test]
fn drifted_settings_are_fixed_in_place() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    let zero = ObservedFdb {
        vxlan: "sfvx1000".into(),
        mac: MacAddr::ZERO,
        vtep: "10.0.0.9".parse().expect("ip"),
    };
    k.fdb.push(zero.clone());
    for l in &mut k.links {
        if l.name == "sfvx1001" {
            l.port = Some(PortFlags {
                neigh_suppress: false,
                learning: true,
            });
        }
        if l.name == "sfbr1000" {
            l.mtu = 1500;
            l.up = false;
            l.addresses.push("192.168.9.1/24".parse().expect("net"));
        }
    }
    let ops = converge(&c.desired(), &mut k);
    let bridge = LinkRef::Host("sfbr1000".into());
    assert_eq!(
        ops,
        vec![
            Op::SetMtu {
                link: bridge.clone(),
                mtu: 1450
            },
            Op::DelAddress {
                link: bridge.clone(),
                addr: "192.168.9.1/24".parse().expect("net")
            },
            Op::SetUp(bridge),
            Op::DelFdb {
                vxlan: zero.vxlan,
                mac: zero.mac,
                vtep: zero.vtep
            },
            Op::SetPortFlags {
                name: "sfvx1001".into(),
                neigh_suppress: true,
                learning: false
            },
        ]
    );
}

#[test]
fn mtu_change_reaches_every_device_without_recreating() {
    let mut c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    c.networks[1].mtu = Some(1400);
    let ops = converge(&c.desired(), &mut k);
    assert!(
        ops.iter()
            .all(|o| matches!(o, Op::SetMtu { mtu: 1400, .. })),
        "{ops:#?}"
    );
    assert_eq!(ops.len(), 4, "bridge, vxlan, both veth ends");
}

#[test]
fn missing_container_side_recreates_the_veth_but_unreachable_namespace_is_left_alone() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    let veth = veth_host_name("fe", "n1-cache");

    let mut lost = k.clone();
    lost.containers[1].links.clear();
    let ops = plan(&c.desired(), &lost);
    assert_eq!(ops[0], Op::DeleteLink(veth.clone()));
    assert!(matches!(&ops[1], Op::CreateVeth { host, .. } if *host == veth));

    let mut blind = k.clone();
    blind.containers[1] = ObservedContainer {
        reachable: false,
        links: vec![],
        ..blind.containers[1].clone()
    };
    assert!(
        plan(&c.desired(), &blind).is_empty(),
        "never delete what cannot be seen"
    );

    let mut unscoped = k.clone();
    unscoped.containers.remove(1);
    assert!(
        plan(&c.desired(), &unscoped).is_empty(),
        "a namespace outside the observation is left alone"
    );
}

#[test]
fn detaching_the_first_network_moves_the_default_route() {
    let mut c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    c.containers[0].interfaces.remove(0);
    c.endpoints
        .retain(|e| !(e.id == "n1-api" && e.network == "be"));
    let ops = converge(&c.desired(), &mut k);
    let inner = LinkRef::Container {
        netns: "/run/netns/api".into(),
        name: "eth1".into(),
    };
    assert_eq!(
        ops,
        vec![
            Op::DeleteLink(veth_host_name("be", "n1-api")),
            Op::SetDefaultRoute {
                link: inner,
                gateway: "172.21.0.1".parse().expect("ip")
            },
        ]
    );
}

#[test]
fn bridge_netfilter_is_turned_off_only_when_asked_and_on() {
    let c = Cluster::new();
    let mut d = c.desired();
    let mut k = kernel_with(&[]);
    k.bridge_netfilter = true;
    let count = |d: &DesiredHost, k: &ObservedHost| {
        plan(d, k)
            .iter()
            .filter(|o| **o == Op::DisableBridgeNetfilter)
            .count()
    };
    assert_eq!(count(&d, &k), 0, "not asked: br_netfilter is left alone");
    d.bridge_netfilter_off = true;
    assert_eq!(count(&d, &k), 1);
    assert_eq!(plan(&d, &k)[..3].last(), Some(&Op::DisableBridgeNetfilter));
    simulate(&mut k, &Op::DisableBridgeNetfilter).expect("simulate");
    assert_eq!(count(&d, &k), 0, "already off: nothing to do");
}

fn set_netfilter(bridge: &str, on: bool) -> Op {
    Op::SetBridgeNetfilter {
        name: bridge.into(),
        on,
    }
}

#[test]
fn a_policed_network_gets_its_bridge_switches_before_the_bridge_comes_up() {
    let mut c = Cluster::new();
    c.policed = BTreeSet::from(["fe".to_string()]);
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    let ops = converge(&c.desired(), &mut k);
    let at = |want: &Op| ops.iter().position(|o| o == want);
    let created = ops
        .iter()
        .position(|o| matches!(o, Op::CreateBridge { name, .. } if name == "sfbr1000"))
        .expect("fe's bridge created");
    let switched = at(&set_netfilter("sfbr1000", true)).expect("fe's switches on");
    assert_eq!(switched, created + 1, "{ops:#?}");
    let first_port = ops
        .iter()
        .position(|o| matches!(o, Op::SetMaster { master, .. } if master == "sfbr1000"));
    assert!(switched < at(&Op::SetUp(LinkRef::Host("sfbr1000".into()))).expect("up"));
    assert!(first_port.is_some_and(|p| switched < p));
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Op::SetBridgeNetfilter { name, .. } if name == "sfbr1001")),
        "be is not policed: a new bridge already has them off"
    );
}

#[test]
fn policing_an_existing_network_flips_only_its_bridge_switches() {
    let mut c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    let before = k.clone();

    c.policed = BTreeSet::from(["be".to_string()]);
    assert_eq!(
        converge(&c.desired(), &mut k),
        vec![set_netfilter("sfbr1001", true)]
    );
    assert!(plan(&c.desired(), &k).is_empty(), "unchanged: nothing");
    // Ports, addresses, FDB and neighbours are as they were: only the bridge's kind changed.
    let mut same = k.clone();
    for l in &mut same.links {
        if l.name == "sfbr1001" {
            l.kind = before.link("sfbr1001").expect("bridge").kind.clone();
        }
    }
    assert_eq!(same, before);

    c.policed.clear();
    assert_eq!(
        converge(&c.desired(), &mut k),
        vec![set_netfilter("sfbr1001", false)],
        "no longer policed: back to the fast path"
    );
    assert_eq!(k, before);
}

#[test]
fn a_half_set_bridge_is_set_again() {
    let mut c = Cluster::new();
    c.policed = BTreeSet::from(["fe".to_string()]);
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    // Someone sets IPv4 on and IPv6 off by hand on both bridges.
    let half = LinkKind::Bridge {
        nf_call_iptables: true,
        nf_call_ip6tables: false,
        mcast_snooping: false,
    };
    for l in k.links.iter_mut().filter(|l| l.name.starts_with("sfbr")) {
        l.kind = half.clone();
    }
    assert_eq!(
        converge(&c.desired(), &mut k),
        vec![
            set_netfilter("sfbr1000", true),
            set_netfilter("sfbr1001", false)
        ]
    );
}

#[test]
fn bridges_run_without_multicast_snooping_and_one_that_has_it_loses_only_that() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    let ops = converge(&c.desired(), &mut k);
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Op::DisableMulticastSnooping { .. })),
        "a new bridge is created without it: {ops:#?}"
    );
    // A bridge made before (or by hand) with the kernel's default.
    let before = k.clone();
    for l in k.links.iter_mut().filter(|l| l.name == "sfbr1000") {
        if let LinkKind::Bridge { mcast_snooping, .. } = &mut l.kind {
            *mcast_snooping = true;
        }
    }
    let snooping = Op::DisableMulticastSnooping {
        name: "sfbr1000".into(),
    };
    assert_eq!(converge(&c.desired(), &mut k), vec![snooping.clone()]);
    assert_eq!(k, before, "ports, addresses, FDB as they were");
    assert_eq!(
        snooping.to_string(),
        "set mcast_snooping 0 on bridge sfbr1000"
    );
    let veth = k
        .links
        .iter()
        .find(|l| l.kind == LinkKind::Veth)
        .map(|l| l.name.clone())
        .expect("a host veth");
    let not_a_bridge = Op::DisableMulticastSnooping { name: veth };
    assert!(simulate(&mut k, &not_a_bridge).is_err());
}
