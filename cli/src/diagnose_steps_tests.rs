use shibafu_overlay::api::HostNet;
use shibafu_overlay::model::{Action, Link, Network, Rule};
use shibafu_overlay::plan::{ObservedFdb, ObservedNeigh, ObservedPortFdb};
use shibafu_overlay::policy::{explain, PolicyView};

use super::*;

fn ep(name: &str, network: &str, node: &str, ip: &str, mac: u8) -> Endpoint {
    let mut e = Endpoint::new(network, name, node, ip.parse().expect("ip"));
    e.mac = shibafu_overlay::model::MacAddr([2, 0, 0, 0, 0, mac]);
    e
}

fn info(name: &str, state: &str, exit: Option<i32>) -> ContainerInfo {
    ContainerInfo {
        name: name.into(),
        state: state.into(),
        pid: None,
        exit_code: exit,
        command: vec![],
        netns: "/proc/1/ns/net".into(),
        interfaces: vec![],
        cni: None,
    }
}

fn at(name: &str, node: Option<&str>, live: bool, seen: Option<Seen>) -> Whereabouts {
    Whereabouts {
        name: name.into(),
        node: node.map(str::to_string),
        live,
        seen,
    }
}

fn live() -> Vec<String> {
    vec!["node1".into(), "node2".into()]
}

#[test]
fn containers_name_a_stopped_container_and_a_node_that_is_down() {
    let web = at(
        "web1",
        Some("node1"),
        true,
        Some(Seen::Info(info("web1", "running", None))),
    );
    let db_ok = at(
        "db1",
        Some("node2"),
        true,
        Some(Seen::Info(info("db1", "running", None))),
    );
    let s = containers(&web, &db_ok, &live());
    assert!(s.ok, "{s:?}");
    assert_eq!(s.node, "node1,node2");
    assert_eq!(s.detail, "web1 running on node1; db1 running on node2");

    let stopped = at(
        "db1",
        Some("node2"),
        true,
        Some(Seen::Info(info("db1", "exited", Some(0)))),
    );
    let s = containers(&web, &stopped, &live());
    assert!(!s.ok);
    assert!(
        s.detail
            .starts_with("container db1 on node2 is stopped (exited 0)"),
        "{}",
        s.detail
    );

    let unreachable = at(
        "db1",
        Some("node2"),
        true,
        Some(Seen::Unreachable("connection refused".into())),
    );
    let s = containers(&web, &unreachable, &live());
    assert!(
        s.detail
            .starts_with("node node2 (of db1) is down: its agent does not answer"),
        "{}",
        s.detail
    );

    let unregistered = at("db1", Some("node3"), false, None);
    let s = containers(&web, &unregistered, &live());
    assert!(
        s.detail
            .starts_with("node node3 (of db1) is down: it holds no lease"),
        "{}",
        s.detail
    );

    let gone = at("db1", None, false, None);
    let s = containers(&web, &gone, &live());
    assert!(!s.ok);
    assert!(s.detail.starts_with("no container named db1 on any live node (node1, node2): if it ran on a node that is down"), "{}", s.detail);
}

#[test]
fn pick_prefers_a_shared_network() {
    let a1 = ep("a", "frontend", "node1", "172.21.0.2", 1);
    let a2 = ep("a", "backend", "node1", "172.22.0.2", 2);
    let b = ep("b", "backend", "node2", "172.22.0.3", 3);
    let (x, y) = pick(&[&a1, &a2], &[&b]).expect("pair");
    assert_eq!((x.network.as_str(), y.name.as_str()), ("backend", "b"));
    let c = ep("c", "database", "node2", "172.23.0.3", 4);
    let (x, _) = pick(&[&a1, &a2], &[&c]).expect("pair");
    assert_eq!(x.network, "frontend");
    assert!(pick(&[], &[&c]).is_none());
}

fn answer(ok: bool, detail: &str, answers: &[&str]) -> ProbeResult {
    ProbeResult {
        ok,
        detail: detail.into(),
        micros: 250,
        answers: answers.iter().map(|a| a.parse().expect("ip")).collect(),
    }
}

#[test]
fn dns_names_a_missing_name_and_a_wrong_address() {
    let web = ep("web1", "frontend", "node1", "172.21.0.2", 1);
    let db = ep("db1", "frontend", "node2", "172.21.0.3", 2);
    let fq = "db1.frontend.local";
    let s = dns(
        "node1",
        &web,
        &db,
        fq,
        Some(&answer(true, "172.21.0.3", &["172.21.0.3"])),
    );
    assert!(s.ok);
    assert_eq!(s.detail, "db1.frontend.local -> 172.21.0.3 (250 us)");
    let s = dns(
        "node1",
        &web,
        &db,
        fq,
        Some(&answer(
            false,
            "db1.frontend.local does not exist (NXDOMAIN)",
            &[],
        )),
    );
    assert!(!s.ok);
    assert!(s.detail.starts_with(
        "web1 cannot resolve db1.frontend.local: db1.frontend.local does not exist (NXDOMAIN)"
    ));
    let s = dns(
        "node1",
        &web,
        &db,
        fq,
        Some(&answer(true, "172.21.0.9", &["172.21.0.9"])),
    );
    assert!(
        !s.ok && s.detail.contains("not to db1's address 172.21.0.3"),
        "{}",
        s.detail
    );
    let s = dns("node1", &web, &db, fq, None);
    assert!(s.ok && s.detail.starts_with("skipped"));
}

fn link(
    name: &str,
    index: u32,
    up: bool,
    master: Option<&str>,
    peer: Option<u32>,
    addr: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({"name": name, "index": index, "kind": "Veth", "mtu": 1450, "mac": null,
        "up": up, "master": master, "port": null, "peer_index": peer,
        "addresses": addr.map(|a| vec![a]).unwrap_or_default()})
}

fn container_net(eth_up: bool, host: bool, neigh_state: &str) -> ContainerNet {
    let host_side = if host {
        vec![link("sfe1", 9, true, Some("sfbr1000"), Some(2), None)]
    } else {
        vec![]
    };
    serde_json::from_value(serde_json::json!({
        "node": "node1",
        "container": {"name": "web1", "state": "running", "netns": "/x", "interfaces": []},
        "inside": {
            "links": [link("lo", 1, true, None, None, Some("127.0.0.1/8")),
                      link("eth0", 2, eth_up, None, Some(9), Some("172.21.0.2/24"))],
            "routes": [{"gateway": "172.21.0.1", "dev": "eth0"}, {"dst": "172.21.0.0/24", "dev": "eth0"}],
            "neighbours": [{"dev": "eth0", "ip": "172.21.0.3", "state": neigh_state}]
        },
        "host_side": host_side
    }))
    .expect("net")
}

#[test]
fn interfaces_check_address_host_end_route_and_neighbour() {
    let web = ep("web1", "frontend", "node1", "172.21.0.2", 1);
    let to: IpAddr = "172.21.0.3".parse().expect("ip");
    let s = interfaces(&container_net(true, true, "reachable"), &web, to);
    assert!(s.ok, "{s:?}");
    assert_eq!(s.detail, "eth0 172.21.0.2 up (host end sfe1 on sfbr1000), route 172.21.0.0/24 via link, neighbour 172.21.0.3 reachable");
    let s = interfaces(&container_net(false, true, "reachable"), &web, to);
    assert_eq!(s.detail, "web1's interface eth0 is down");
    let s = interfaces(&container_net(true, false, "reachable"), &web, to);
    assert_eq!(s.detail, "the host end of web1's eth0 is missing on node1");
    let s = interfaces(&container_net(true, true, "failed"), &web, to);
    assert!(!s.ok);
    assert!(s
        .detail
        .contains("neighbour entry for 172.21.0.3 on eth0 is failed"));
    let other = ep("web1", "frontend", "node1", "172.21.0.7", 1);
    let s = interfaces(&container_net(true, true, "reachable"), &other, to);
    assert!(s
        .detail
        .starts_with("web1 has no interface with its address 172.21.0.7"));
    let far: IpAddr = "172.22.0.3".parse().expect("ip");
    let s = interfaces(&container_net(true, true, "reachable"), &web, far);
    assert!(
        s.ok && s.detail.contains("route default via 172.21.0.1"),
        "{}",
        s.detail
    );
}

fn host(node: &str, fdb: bool) -> HostNet {
    let net = Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096);
    let (br, vx) = (net.bridge_name(), net.vxlan_name());
    let mut h: HostNet = serde_json::from_value(serde_json::json!({
        "node": node, "underlay": "10.99.0.11",
        "links": [link(&br, 3, true, None, None, None), link(&vx, 4, true, Some(&br), None, None)],
        "vxlan_fdb": [], "bridge_fdb": [], "neighbours": []
    }))
    .expect("host");
    if fdb {
        h.vxlan_fdb.push(ObservedFdb {
            vxlan: vx.clone(),
            mac: shibafu_overlay::model::MacAddr([2, 0, 0, 0, 0, 2]),
            vtep: "10.99.0.12".parse().expect("ip"),
        });
    }
    h.bridge_fdb.push(ObservedPortFdb {
        port: vx,
        mac: shibafu_overlay::model::MacAddr([2, 0, 0, 0, 0, 2]),
    });
    h.neighbours.push(ObservedNeigh {
        bridge: br,
        ip: "172.21.0.3".parse().expect("ip"),
        mac: shibafu_overlay::model::MacAddr([2, 0, 0, 0, 0, 2]),
    });
    h
}

#[test]
fn fabric_names_a_missing_fdb_entry() {
    let net = Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096);
    let db = ep("db1", "frontend", "node2", "172.21.0.3", 2);
    let vtep = Some("10.99.0.12".parse().expect("ip"));
    let good = host("node1", true);
    let s = fabric(&[FabricSide {
        host: &good,
        network: &net,
        remote: &db,
        vtep,
    }]);
    assert!(s.ok, "{s:?}");
    let bad = host("node1", false);
    let s = fabric(&[FabricSide {
        host: &bad,
        network: &net,
        remote: &db,
        vtep,
    }]);
    assert!(!s.ok);
    assert!(
        s.detail.starts_with(
            "node1 has no VXLAN FDB entry for db1 (02:00:00:00:00:02) -> 10.99.0.12 on sfvx1000"
        ),
        "{}",
        s.detail
    );
    let s = fabric(&[FabricSide {
        host: &bad,
        network: &net,
        remote: &db,
        vtep: None,
    }]);
    assert!(s.ok, "same node: only the bridge counts");
}

#[test]
fn underlay_names_a_partition() {
    let ip: IpAddr = "10.99.0.12".parse().expect("ip");
    assert!(underlay("node1", "node2", ip, Some(&answer(true, "echo reply", &[]))).ok);
    let s = underlay(
        "node1",
        "node2",
        ip,
        Some(&answer(false, "no answer within 1000 ms", &[])),
    );
    assert!(!s.ok);
    assert_eq!(s.detail, "node1 cannot reach node2's underlay address 10.99.0.12 (no answer within 1000 ms): the nodes are partitioned; check the network between them");
    assert!(underlay("node1", "node1", ip, None)
        .detail
        .starts_with("skipped"));
}

#[test]
fn policy_names_the_deciding_rule() {
    let nets = [
        Network::new("frontend", "172.21.0.0/24".parse().expect("net"), 4096),
        Network::new("database", "172.23.0.0/24".parse().expect("net"), 4098),
    ];
    let web = ep("web1", "frontend", "node1", "172.21.0.2", 1);
    let db = ep("db1", "database", "node2", "172.23.0.2", 2);
    let links = [Link::new("frontend", "database")];
    let pols = vec![Policy::new(
        "database-isolation",
        "database",
        vec![Rule::parse(Action::Deny, Direction::Ingress, "frontend").expect("rule")],
    )];
    let flow = Flow {
        proto: FlowProto::Tcp,
        port: 5432,
    };
    let eps = [web.clone(), db.clone()];
    let view = PolicyView::new(&nets, &eps, &links, &pols);
    let d = explain(&view, IpAddr::V4(web.ipv4), IpAddr::V4(db.ipv4), flow);
    let s = policy(&d, &web, &db, flow, &pols);
    assert!(!s.ok);
    assert_eq!(s.node, "cluster");
    assert_eq!(
        s.detail,
        "policy database-isolation rule 1 (deny ingress from frontend) denies web1 -> db1:5432/tcp: an ingress rule of database; change or remove it with `shibafu network policy`"
    );
    let view = PolicyView::new(&nets, &eps, &[], &[]);
    let d = explain(&view, IpAddr::V4(web.ipv4), IpAddr::V4(db.ipv4), flow);
    let s = policy(&d, &web, &db, flow, &[]);
    assert!(!s.ok);
    assert!(
        s.detail
            .contains("shibafu network connect-networks frontend database"),
        "{}",
        s.detail
    );
    let view = PolicyView::new(&nets, &eps, &links, &[]);
    let d = explain(&view, IpAddr::V4(web.ipv4), IpAddr::V4(db.ipv4), flow);
    let s = policy(&d, &web, &db, flow, &[]);
    assert!(s.ok);
    assert_eq!(
        s.detail,
        "allowed: networks frontend and database are linked"
    );
}

#[test]
fn probe_reports_what_happened() {
    let web = ep("web1", "frontend", "node1", "172.21.0.2", 1);
    let db = ep("db1", "frontend", "node2", "172.21.0.3", 2);
    let flow = Flow {
        proto: FlowProto::Tcp,
        port: 80,
    };
    let s = probe(
        "node1",
        &web,
        &db,
        flow,
        &answer(false, "refused: nothing listens on that port", &[]),
    );
    assert!(!s.ok);
    assert_eq!(
        s.detail,
        "tcp/80 from web1 to db1 172.21.0.3: refused: nothing listens on that port"
    );
    let s = probe("node1", &web, &db, flow, &answer(true, "connected", &[]));
    assert_eq!(
        s.detail,
        "tcp/80 from web1 to db1 172.21.0.3: connected in 250 us"
    );
}
