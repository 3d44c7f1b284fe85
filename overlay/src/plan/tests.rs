//! Unit tests of planning: building the desired state, and plan against a simulated kernel.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::*;
use crate::model::{Endpoint, Network, Node, SCHEMA_VERSION};
use crate::netlink::simulate;

pub(super) fn net(name: &str, subnet: &str, vni: u32) -> Network {
    Network {
        schema: SCHEMA_VERSION,
        name: name.into(),
        subnet: subnet.parse().expect("subnet"),
        subnet6: None,
        vni,
        zone: format!("{name}.local"),
        mtu: None,
        internal: false,
        forwarders: vec![],
    }
}

pub(super) fn node(name: &str, ip: &str) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: ip.parse().expect("ip"),
        version: "test".into(),
        wg_pubkey: None,
        started_at: 0,
    }
}

pub(super) fn ep(id: &str, network: &str, node: &str, ip: &str, mac: &str) -> Endpoint {
    Endpoint {
        schema: SCHEMA_VERSION,
        id: id.into(),
        network: network.into(),
        name: id.into(),
        aliases: vec![],
        node: node.into(),
        ipv4: ip.parse().expect("ip"),
        ipv6: None,
        mac: mac.into(),
        service: None,
        port: None,
        weight: 1,
    }
}

pub(super) fn container(netns: &str, ifs: &[(&str, &str, &str)]) -> LocalContainer {
    LocalContainer {
        netns: PathBuf::from(netns),
        interfaces: ifs
            .iter()
            .map(|(network, id, ifname)| LocalInterface {
                network: (*network).into(),
                endpoint_id: (*id).into(),
                ifname: (*ifname).into(),
            })
            .collect(),
    }
}

/// A two-network cluster seen from node1: fe (with IPv6) and be; a local container on both,
/// another local one on fe, and remote endpoints on node2 and node3.
pub(crate) struct Cluster {
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub endpoints: Vec<Endpoint>,
    pub containers: Vec<LocalContainer>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let mut fe = net("fe", "172.21.0.0/24", 4096);
        fe.subnet6 = Some("fd00:21::/64".parse().expect("subnet6"));
        let be = net("be", "172.22.0.0/24", 4097);
        let mut api_fe = ep("n1-api", "fe", "node1", "172.21.0.2", "02:00:00:00:01:02");
        api_fe.ipv6 = Some("fd00:21::2".parse().expect("v6"));
        let mut web = ep("n2-web", "fe", "node2", "172.21.0.3", "02:00:00:00:02:03");
        web.ipv6 = Some("fd00:21::3".parse().expect("v6"));
        Cluster {
            networks: vec![fe, be],
            nodes: vec![node("node1", "10.0.0.1"), node("node2", "10.0.0.2"), node("node3", "10.0.0.3")],
            endpoints: vec![
                ep("n1-api", "be", "node1", "172.22.0.2", "02:00:00:00:01:12"),
                api_fe,
                ep("n1-cache", "fe", "node1", "172.21.0.4", "02:00:00:00:01:04"),
                web,
                ep("n3-db", "be", "node3", "172.22.0.5", "02:00:00:00:03:05"),
            ],
            containers: vec![
                container("/run/netns/api", &[("be", "n1-api", "eth0"), ("fe", "n1-api", "eth1")]),
                container("/run/netns/cache", &[("fe", "n1-cache", "eth0")]),
            ],
        }
    }

    pub fn inputs(&self) -> HostInputs<'_> {
        HostInputs {
            node: "node1",
            underlay: Some("10.0.0.1".parse().expect("ip")),
            underlay_mtu: 1500,
            networks: &self.networks,
            nodes: &self.nodes,
            endpoints: &self.endpoints,
            containers: &self.containers,
        }
    }

    pub fn desired(&self) -> DesiredHost {
        DesiredHost::build(&self.inputs()).expect("desired")
    }
}

/// A simulated host holding the given container namespaces, nothing else.
fn kernel_with(netns: &[&str]) -> ObservedHost {
    ObservedHost {
        containers: netns
            .iter()
            .map(|n| ObservedContainer {
                netns: PathBuf::from(n),
                reachable: true,
                links: vec![],
                default4: vec![],
                default6: vec![],
            })
            .collect(),
        ..ObservedHost::default()
    }
}

/// Plans and applies until nothing is left; returns the ops of the first round.
fn converge(desired: &DesiredHost, k: &mut ObservedHost) -> Vec<Op> {
    let first = plan(desired, k);
    for op in &first {
        simulate(k, op).unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    let again = plan(desired, k);
    assert!(again.is_empty(), "not idempotent, second plan: {again:#?}");
    first
}

#[test]
fn builds_networks_with_bridge_vxlan_gateway_and_mtu() {
    let d = Cluster::new().desired();
    let names: Vec<&str> = d.networks.iter().map(|n| n.bridge.as_str()).collect();
    assert_eq!(names, ["sfbr1000", "sfbr1001"]);
    let fe = d.network("fe").expect("fe");
    assert_eq!(fe.mtu, 1450);
    assert_eq!(fe.gateway4.to_string(), "172.21.0.1/24");
    assert_eq!(fe.gateway6.map(|g| g.to_string()).as_deref(), Some("fd00:21::1/64"));
    assert_eq!(fe.mac, gateway_mac(4096));
    let vx = fe.vxlan.as_ref().expect("vxlan");
    assert_eq!((vx.name.as_str(), vx.vni, vx.port), ("sfvx1000", 4096, VXLAN_PORT));
    assert_eq!(vx.local, "10.0.0.1".parse::<IpAddr>().expect("ip"));
    assert!(d.has_ipv6());
}

#[test]
fn network_mtu_overrides_underlay() {
    let mut c = Cluster::new();
    c.networks[1].mtu = Some(1400);
    let d = c.desired();
    assert_eq!(d.network("be").expect("be").mtu, 1400);
    let eth0 = d.endpoints.iter().find(|e| e.network == "be").expect("be endpoint");
    assert_eq!(eth0.mtu, 1400);
}

#[test]
fn single_host_mode_has_no_vxlan_and_no_remotes() {
    let c = Cluster::new();
    let d = DesiredHost::build(&HostInputs { underlay: None, ..c.inputs() }).expect("desired");
    assert!(d.networks.iter().all(|n| n.vxlan.is_none()));
    let ops = plan(&d, &kernel_with(&["/run/netns/api", "/run/netns/cache"]));
    assert!(!ops.iter().any(|o| matches!(o, Op::CreateVxlan { .. } | Op::AddFdb { .. } | Op::SetNeigh { .. })));
}

#[test]
fn local_endpoints_get_names_addresses_and_one_default_route() {
    let d = Cluster::new().desired();
    let api: Vec<&DesiredEndpoint> = d.endpoints.iter().filter(|e| e.netns.ends_with("api")).collect();
    assert_eq!(api.len(), 2);
    let (eth0, eth1) = (api[0], api[1]);
    assert_eq!((eth0.ifname.as_str(), eth0.network.as_str()), ("eth0", "be"));
    assert_eq!(eth0.host_ifname, veth_host_name("be", "n1-api"));
    assert_eq!(eth0.bridge, "sfbr1001");
    assert_eq!(eth0.ipv4.to_string(), "172.22.0.2/24");
    assert_eq!(eth0.default4, Some(Ipv4Addr::new(172, 22, 0, 1)));
    assert_eq!(eth1.default4, None, "default route via the first network only");
    // be has no IPv6, so IPv6 default goes via the first network that has it.
    assert_eq!(eth0.default6, None);
    assert_eq!(eth1.default6, Some("fd00:21::1".parse().expect("v6")));
    assert_eq!(eth1.ipv6.map(|a| a.to_string()).as_deref(), Some("fd00:21::2/64"));
    assert_ne!(eth0.host_ifname, eth1.host_ifname);
}

#[test]
fn remotes_come_from_other_nodes_with_their_vtep() {
    let d = Cluster::new().desired();
    let fe = d.network("fe").and_then(|n| n.vxlan.as_ref()).expect("fe vxlan");
    assert_eq!(fe.remotes.len(), 1);
    let web = &fe.remotes[0];
    assert_eq!(web.mac.to_string(), "02:00:00:00:02:03");
    assert_eq!(web.vtep, "10.0.0.2".parse::<IpAddr>().expect("ip"));
    assert_eq!(web.ipv6, Some("fd00:21::3".parse().expect("v6")));
    let be = d.network("be").and_then(|n| n.vxlan.as_ref()).expect("be vxlan");
    assert_eq!(be.remotes.iter().map(|r| r.vtep.to_string()).collect::<Vec<_>>(), ["10.0.0.3"]);
}

#[test]
fn bad_remote_records_are_skipped_not_fatal() {
    let mut c = Cluster::new();
    c.endpoints.push(ep("gone", "fe", "node9", "172.21.0.9", "02:00:00:00:09:09")); // no node record
    c.endpoints.push(ep("badmac", "fe", "node2", "172.21.0.10", "nope"));
    c.endpoints.push(ep("outside", "fe", "node2", "10.9.9.9", "02:00:00:00:02:0a"));
    c.endpoints.push(ep("dupmac", "fe", "node3", "172.21.0.11", "02:00:00:00:02:03"));
    c.endpoints.push(ep("dupip", "fe", "node3", "172.21.0.4", "02:00:00:00:03:0b")); // local cache's IP
    c.endpoints.push(ep("gwip", "fe", "node3", "172.21.0.1", "02:00:00:00:03:0c"));
    c.endpoints.push(ep("nonet", "zz", "node2", "172.21.0.12", "02:00:00:00:02:0c"));
    c.nodes.push(node("node6", "fd00::6"));
    c.endpoints.push(ep("v6vtep", "fe", "node6", "172.21.0.13", "02:00:00:00:06:0d"));
    let d = c.desired();
    let fe = d.network("fe").and_then(|n| n.vxlan.as_ref()).expect("fe vxlan");
    assert_eq!(fe.remotes.iter().map(|r| r.mac.to_string()).collect::<Vec<_>>(), ["02:00:00:00:02:03"]);
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
    check(&|c| c.containers[1].interfaces[0].network = "zz".into(), &|e| matches!(e, PlanError::UnknownNetwork { .. }));
    check(&|c| c.containers[1].interfaces[0].endpoint_id = "zz".into(), &|e| matches!(e, PlanError::UnknownEndpoint { .. }));
    check(&|c| c.endpoints[2].node = "node2".into(), &|e| matches!(e, PlanError::ForeignEndpoint { .. }));
    check(&|c| c.endpoints[2].mac = "01:00:5e:00:00:01".into(), &|e| matches!(e, PlanError::InvalidMac { .. }));
    check(&|c| c.endpoints[2].ipv4 = "10.1.1.1".parse().expect("ip"), &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }));
    check(&|c| c.endpoints[2].ipv4 = "172.21.0.1".parse().expect("ip"), &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }));
    check(&|c| c.endpoints[0].ipv6 = Some("fd00::9".parse().expect("v6")), &|e| matches!(e, PlanError::AddressOutsideSubnet { .. }));
    check(&|c| c.containers[0].interfaces[1].ifname = "eth0".into(), &|e| matches!(e, PlanError::DuplicateIfname { .. }));
    check(&|c| c.containers[0].interfaces[1].ifname = "a-very-long-name0".into(), &|e| matches!(e, PlanError::InvalidIfname(_)));
    check(&|c| {
        let dup = c.containers[0].interfaces[1].clone();
        c.containers[1].interfaces.push(dup)
    }, &|e| {
        matches!(e, PlanError::DuplicateAttachment { .. } | PlanError::DuplicateIfname { .. })
    });
    check(&|c| {
        let dup = c.containers[1].clone();
        c.containers.push(dup)
    }, &|e| matches!(e, PlanError::DuplicateAttachment { .. }));
    let mut c = Cluster::new();
    let err = DesiredHost::build(&HostInputs { underlay_mtu: 1300, ..c.inputs() }).expect_err("v6 needs 1280");
    assert!(matches!(err, PlanError::MtuTooSmall { min: 1280, .. }), "{err:?}");
    c.networks[0].subnet6 = None;
    c.endpoints[1].ipv6 = None;
    assert!(DesiredHost::build(&HostInputs { underlay_mtu: 1300, ..c.inputs() }).is_ok(), "v4 only accepts 1250");
}

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
    let inner = LinkRef::Container { netns: "/run/netns/cache".into(), name: "eth0".into() };
    let veth = veth_host_name("fe", "n1-cache");
    let web_mac: MacAddr = "02:00:00:00:02:03".parse().expect("mac");
    let vtep: IpAddr = "10.0.0.2".parse().expect("ip");
    let expected = vec![
        Op::EnableForwarding(IpFamily::V4),
        Op::CreateBridge { name: "sfbr1000".into(), mac: gateway_mac(4096), mtu: 1450 },
        Op::AddAddress { link: host("sfbr1000"), addr: "172.21.0.1/24".parse().expect("net") },
        Op::SetUp(host("sfbr1000")),
        Op::CreateVxlan { name: "sfvx1000".into(), vni: 4096, local: "10.0.0.1".parse().expect("ip"), port: 4789, mtu: 1450 },
        Op::SetMaster { name: "sfvx1000".into(), master: "sfbr1000".into() },
        Op::SetPortFlags { name: "sfvx1000".into(), neigh_suppress: true, learning: false },
        Op::SetUp(host("sfvx1000")),
        Op::AddFdb { vxlan: "sfvx1000".into(), mac: web_mac, vtep },
        Op::AddPortFdb { port: "sfvx1000".into(), mac: web_mac },
        Op::SetNeigh { bridge: "sfbr1000".into(), ip: "172.21.0.3".parse().expect("ip"), mac: web_mac },
        Op::CreateVeth {
            host: veth.clone(),
            netns: "/run/netns/cache".into(),
            peer: "eth0".into(),
            peer_mac: "02:00:00:00:01:04".parse().expect("mac"),
            mtu: 1450,
        },
        Op::SetMaster { name: veth.clone(), master: "sfbr1000".into() },
        Op::SetUp(host(&veth)),
        Op::AddAddress { link: inner.clone(), addr: "172.21.0.4/24".parse().expect("net") },
        Op::SetUp(inner.clone()),
        Op::SetDefaultRoute { link: inner, gateway: "172.21.0.1".parse().expect("ip") },
    ];
    assert_eq!(ops, expected);
}

#[test]
fn converges_and_second_plan_is_empty() {
    let d = Cluster::new().desired();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    let ops = converge(&d, &mut k);
    assert!(ops.contains(&Op::EnableForwarding(IpFamily::V6)));
    assert_eq!(k.links.len(), 2 + 2 + 3, "two bridges, two vxlans, three veths");
    assert!(k.fdb.iter().all(|f| f.mac != MacAddr::ZERO), "no flooding entry");
    assert_eq!(k.neighbours.len(), 3, "web v4+v6, db v4");
    let api = k.container(std::path::Path::new("/run/netns/api")).expect("api");
    assert_eq!(api.default4, vec![(Ipv4Addr::new(172, 22, 0, 1), "eth0".to_string())]);
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
            Op::DelFdb { vxlan: "sfvx1001".into(), mac: db_mac, vtep: "10.0.0.3".parse().expect("ip") },
            Op::DelPortFdb { port: "sfvx1001".into(), mac: db_mac },
            Op::DelNeigh { bridge: "sfbr1001".into(), ip: "172.22.0.5".parse().expect("ip") },
        ]
    );

    // A remote endpoint moves to another node: only its FDB destination changes.
    c.endpoints.iter_mut().filter(|e| e.id == "n2-web").for_each(|e| e.node = "node3".into());
    let ops = converge(&c.desired(), &mut k);
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert!(matches!(&ops[0], Op::DelFdb { vtep, .. } if vtep.to_string() == "10.0.0.2"));
    assert!(matches!(&ops[1], Op::AddFdb { vtep, .. } if vtep.to_string() == "10.0.0.3"));

    // A new local container: only its veth and configuration.
    c.endpoints.push(ep("n1-new", "be", "node1", "172.22.0.7", "02:00:00:00:01:07"));
    c.containers.push(container("/run/netns/new", &[("be", "n1-new", "eth0")]));
    k.containers.push(kernel_with(&["/run/netns/new"]).containers.remove(0));
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
    simulate(&mut k, &Op::CreateBridge { name: "sfbr9999".into(), mac: MacAddr([2, 0, 0, 0, 0, 9]), mtu: 1500 }).expect("bridge");
    simulate(&mut k, &Op::CreateVxlan { name: "sfvx9999".into(), vni: 9, local: "10.0.0.1".parse().expect("ip"), port: 4789, mtu: 1500 })
        .expect("vxlan");
    let mut foreign = k.links[0].clone();
    foreign.name = "docker0".into();
    foreign.index = 999;
    k.links.push(foreign);
    let ops = plan(&c.desired(), &k);
    assert_eq!(ops, vec![Op::DeleteLink("sfvx9999".into()), Op::DeleteLink("sfbr9999".into())]);
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
    assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "veths, then vxlans, then bridges: {ops:#?}");
    assert!(k.links.is_empty() && k.fdb.is_empty() && k.neighbours.is_empty());
    assert!(k.containers.iter().all(|c| c.links.is_empty() && c.default4.is_empty()));
}

#[test]
fn wrong_vxlan_parameters_recreate_the_device_and_its_entries() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    for l in &mut k.links {
        if l.name == "sfvx1000" {
            l.kind = LinkKind::Vxlan { vni: 4096, local: Some("10.0.0.1".parse().expect("ip")), port: 4789, learning: true };
        }
    }
    let ops = converge(&c.desired(), &mut k);
    assert_eq!(ops[0], Op::DeleteLink("sfvx1000".into()));
    assert!(ops.contains(&Op::SetPortFlags { name: "sfvx1000".into(), neigh_suppress: true, learning: false }));
    assert!(ops.iter().any(|o| matches!(o, Op::AddFdb { vxlan, .. } if vxlan == "sfvx1000")));
    assert!(ops.iter().any(|o| matches!(o, Op::AddPortFdb { port, .. } if port == "sfvx1000")));
    assert!(!ops.iter().any(|o| matches!(o, Op::SetNeigh { .. })), "neighbours live on the bridge, untouched");
}

#[test]
fn drifted_settings_are_fixed_in_place() {
    let c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    let zero = ObservedFdb { vxlan: "sfvx1000".into(), mac: MacAddr::ZERO, vtep: "10.0.0.9".parse().expect("ip") };
    k.fdb.push(zero.clone());
    for l in &mut k.links {
        if l.name == "sfvx1001" {
            l.port = Some(PortFlags { neigh_suppress: false, learning: true });
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
            Op::SetMtu { link: bridge.clone(), mtu: 1450 },
            Op::DelAddress { link: bridge.clone(), addr: "192.168.9.1/24".parse().expect("net") },
            Op::SetUp(bridge),
            Op::DelFdb { vxlan: zero.vxlan, mac: zero.mac, vtep: zero.vtep },
            Op::SetPortFlags { name: "sfvx1001".into(), neigh_suppress: true, learning: false },
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
    assert!(ops.iter().all(|o| matches!(o, Op::SetMtu { mtu: 1400, .. })), "{ops:#?}");
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
    blind.containers[1] = ObservedContainer { reachable: false, links: vec![], ..blind.containers[1].clone() };
    assert!(plan(&c.desired(), &blind).is_empty(), "never delete what cannot be seen");
}

#[test]
fn detaching_the_first_network_moves_the_default_route() {
    let mut c = Cluster::new();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    converge(&c.desired(), &mut k);
    c.containers[0].interfaces.remove(0);
    c.endpoints.retain(|e| !(e.id == "n1-api" && e.network == "be"));
    let ops = converge(&c.desired(), &mut k);
    let inner = LinkRef::Container { netns: "/run/netns/api".into(), name: "eth1".into() };
    assert_eq!(
        ops,
        vec![
            Op::DeleteLink(veth_host_name("be", "n1-api")),
            Op::SetDefaultRoute { link: inner, gateway: "172.21.0.1".parse().expect("ip") },
        ]
    );
}
