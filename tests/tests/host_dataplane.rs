//! Host tier: the dataplane library (plan + netlink executor) against the real kernel, each test
//! in its own namespaces: "host" namespaces play nodes, "container" namespaces play containers.
//! Single host: bridge + gateway, attach, ping, IPv6, multi-network containers, idempotence with
//! a ping running across re-plans, teardown. Overlay: two hosts joined by a veth underlay, VXLAN
//! with static FDB/neighbour entries and ARP suppression, MTU with DF, routing between networks.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shibafu_overlay::firewall::{planned_ports, Firewall, FirewallSpec, NftFirewall};
use shibafu_overlay::model::Link;
use shibafu_overlay::netlink::{reconcile, Dataplane, NetlinkDataplane, Scope};
use shibafu_overlay::plan::{plan, veth_host_name, DesiredHost, Op};
use shibafu_tests::plan::{attach, desired, ep, net, node};
use shibafu_tests::{exec_ok, exec_out, is_root, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier dataplane test: needs root");
    }
    is_root()
}

/// Applies `d` on `dp`, requires success, and requires a second plan to be empty.
async fn converge(dp: &NetlinkDataplane, d: &DesiredHost) {
    let (ops, report) = reconcile(dp, d, &Scope::All).await.expect("observe");
    assert!(
        report.is_ok(),
        "apply failed: {:#?}\nops: {ops:#?}",
        report.errors
    );
    let observed = dp.observe(d, &Scope::All).await.expect("observe");
    let again = plan(d, &observed);
    assert!(
        again.is_empty(),
        "second plan not empty: {again:#?}\nobserved: {observed:#?}"
    );
}

fn ping(from: &NetnsGuard, args: &[&str]) -> bool {
    exec_out(
        from.cmd("ping")
            .args(["-c", "1", "-W", "1", "-q"])
            .args(args),
    )
    .status
    .success()
}

fn sf_links(host: &NetnsGuard) -> Vec<String> {
    host.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .filter(|n| n.starts_with("sf"))
        .collect()
}

#[tokio::test]
async fn bridge_attach_ping_ipv6_and_teardown() {
    if !root() {
        return;
    }
    let (h, c1, c2) = (
        NetnsGuard::new("dph"),
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
    );
    let networks = [net("fe", "172.31.0.0/24", Some("fd00:31::/64"), 0x2001)];
    let endpoints = [
        ep(
            "c1",
            "fe",
            "h",
            "172.31.0.2",
            Some("fd00:31::2"),
            "02:00:00:31:00:02",
        ),
        ep(
            "c2",
            "fe",
            "h",
            "172.31.0.3",
            Some("fd00:31::3"),
            "02:00:00:31:00:03",
        ),
    ];
    let containers = [attach(&c1, &[("fe", "c1")]), attach(&c2, &[("fe", "c2")])];
    let dp = NetlinkDataplane::in_netns(h.path());
    converge(
        &dp,
        &desired("h", None, &networks, &[], &endpoints, &containers),
    )
    .await;

    assert!(ping(&c1, &["172.31.0.3"]), "container to container");
    assert!(ping(&c1, &["172.31.0.1"]), "container to gateway");
    assert!(
        ping(&c2, &["-6", "fd00:31::2"]),
        "IPv6 container to container"
    );
    assert!(ping(&c2, &["-6", "fd00:31::1"]), "IPv6 to gateway");
    let eth0 = c1.ip(&["-o", "link", "show", "eth0"]);
    assert!(
        eth0.contains("mtu 1450") && eth0.contains("02:00:00:31:00:02"),
        "{eth0}"
    );
    assert_eq!(
        c1.ip(&["route", "show", "default"]).trim(),
        "default via 172.31.0.1 dev eth0 proto static"
    );
    let br = h.ip(&["-o", "link", "show", "sfbr2001"]);
    assert!(
        br.contains("mtu 1450") && br.contains("02:73:66:00:20:01"),
        "anycast gateway MAC: {br}"
    );
    assert_eq!(
        sf_links(&h).len(),
        3,
        "bridge + two veths, no vxlan in single-host mode: {:?}",
        sf_links(&h)
    );
    // An IPv6 network's containers keep their link-locals; bridge ports take no part in IPv6
    // (the pings above crossed them): no address, and no multicast route in the host's table,
    // which each new port's route insert and every link change would walk.
    assert!(c1.ip(&["-6", "addr", "show", "eth0"]).contains("fe80::"));
    let local6 = h.ip(&["-6", "route", "show", "table", "local"]);
    assert!(
        !local6.contains("dev sfe"),
        "routes of bridge ports: {local6}"
    );
    for port in sf_links(&h).iter().filter(|l| l.starts_with("sfe")) {
        let v6 = h.ip(&["-6", "-o", "addr", "show", "dev", port]);
        assert!(v6.trim().is_empty(), "{port} has IPv6 addresses: {v6}");
        let off = exec_ok(
            h.cmd("cat")
                .arg(format!("/proc/sys/net/ipv6/conf/{port}/disable_ipv6")),
        );
        assert_eq!(off.trim(), "1", "{port}: IPv6 on");
        // The host end carries the bridge's MAC: the bridge keeps no local entry per port.
        let link = h.ip(&["-o", "link", "show", "dev", port]);
        assert!(link.contains("link/ether 02:73:66:00:20:01"), "{link}");
        let fdb = exec_ok(Command::new("bridge").args([
            "-n",
            h.name(),
            "fdb",
            "show",
            "br",
            "sfbr2001",
            "dev",
            port,
        ]));
        assert!(
            !fdb.contains("master sfbr2001 permanent"),
            "{port}: a local entry of its own: {fdb}"
        );
    }

    converge(&dp, &DesiredHost::default()).await;
    assert!(sf_links(&h).is_empty(), "left behind: {:?}", sf_links(&h));
    assert!(
        !h.ip(&["addr"]).contains("172.31."),
        "gateway address left behind"
    );
    assert!(
        !c1.ip(&["-o", "link"]).contains("eth0"),
        "container interface left behind"
    );
}

#[tokio::test]
async fn multi_network_container_routes_via_first_network() {
    if !root() {
        return;
    }
    let (h, m, b) = (
        NetnsGuard::new("dph"),
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
    );
    let networks = [
        net("a", "172.32.0.0/24", None, 0x2101),
        net("b", "172.33.0.0/24", None, 0x2102),
    ];
    let mut endpoints = vec![
        ep("m", "a", "h", "172.32.0.2", None, "02:00:00:32:00:02"),
        ep("m", "b", "h", "172.33.0.2", None, "02:00:00:33:00:02"),
        ep("b1", "b", "h", "172.33.0.3", None, "02:00:00:33:00:03"),
    ];
    let mut containers = vec![
        attach(&m, &[("a", "m"), ("b", "m")]),
        attach(&b, &[("b", "b1")]),
    ];
    let dp = NetlinkDataplane::in_netns(h.path());
    converge(
        &dp,
        &desired("h", None, &networks, &[], &endpoints, &containers),
    )
    .await;

    assert_eq!(
        m.ip(&["route", "show", "default"]).trim(),
        "default via 172.32.0.1 dev eth0 proto static"
    );
    assert!(m
        .ip(&["-o", "addr", "show", "eth1"])
        .contains("172.33.0.2/24"));
    assert!(ping(&m, &["172.33.0.3"]), "on-link over eth1");
    assert!(ping(&m, &["172.32.0.1"]), "first gateway");
    // IPv4-only networks: no IPv6 link-local to flood the bridge with DAD, MLD and RS.
    for dev in ["eth0", "eth1"] {
        let v6 = m.ip(&["-6", "-o", "addr", "show", "dev", dev]);
        assert!(v6.trim().is_empty(), "{dev} has IPv6 addresses: {v6}");
    }

    // Detach the first network: its interface goes, the default route moves to the second.
    endpoints.remove(0);
    containers[0].interfaces.remove(0);
    converge(
        &dp,
        &desired("h", None, &networks, &[], &endpoints, &containers),
    )
    .await;
    assert!(!m.ip(&["-o", "link"]).contains("eth0"));
    assert_eq!(
        m.ip(&["route", "show", "default"]).trim(),
        "default via 172.33.0.1 dev eth1 proto static"
    );
    assert!(ping(&m, &["172.33.0.3"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapply_and_restart_lose_no_packets() {
    if !root() {
        return;
    }
    let (h, c1, c2, c3) = (
        NetnsGuard::new("dph"),
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
    );
    let networks = [net("fe", "172.36.0.0/24", None, 0x2201)];
    let mut endpoints = vec![
        ep("c1", "fe", "h", "172.36.0.2", None, "02:00:00:36:00:02"),
        ep("c2", "fe", "h", "172.36.0.3", None, "02:00:00:36:00:03"),
    ];
    let mut containers = vec![attach(&c1, &[("fe", "c1")]), attach(&c2, &[("fe", "c2")])];
    let before = desired("h", None, &networks, &[], &endpoints, &containers);
    converge(&NetlinkDataplane::in_netns(h.path()), &before).await;

    let ping = c1
        .cmd("ping")
        .args(["-i", "0.05", "-c", "60", "-W", "1", "-q", "172.36.0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ping");
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_millis(2000) {
        // A fresh dataplane each round is an agent restart: it must find nothing to do.
        let dp = NetlinkDataplane::in_netns(h.path());
        let ops = plan(
            &before,
            &dp.observe(&before, &Scope::All).await.expect("observe"),
        );
        assert!(
            ops.is_empty(),
            "restart would touch running containers: {ops:#?}"
        );
        rounds += 1;
    }
    // A change elsewhere while traffic flows touches only the new container.
    endpoints.push(ep("c3", "fe", "h", "172.36.0.4", None, "02:00:00:36:00:04"));
    containers.push(attach(&c3, &[("fe", "c3")]));
    let after = desired("h", None, &networks, &[], &endpoints, &containers);
    let scope = Scope::Only(vec![c3.path()]);
    let attach_start = Instant::now();
    let (ops, report) = reconcile(&NetlinkDataplane::in_netns(h.path()), &after, &scope)
        .await
        .expect("reconcile");
    eprintln!(
        "scoped attach reconcile: {} ops in {:?}",
        ops.len(),
        attach_start.elapsed()
    );
    assert!(report.is_ok(), "{:#?}", report.errors);
    let c3_veth = veth_host_name("fe", "c3");
    assert!(!ops.is_empty());
    for op in &ops {
        let t = op.to_string();
        assert!(
            t.contains(&c3_veth) || t.contains(c3.name()),
            "touched something else: {t}"
        );
    }
    // An attach on a settled host reads only its own workload: same ops, nothing else touched.
    let c4 = NetnsGuard::new("dpc");
    endpoints.push(ep("c4", "fe", "h", "172.36.0.5", None, "02:00:00:36:00:05"));
    containers.push(attach(&c4, &[("fe", "c4")]));
    let last = desired("h", None, &networks, &[], &endpoints, &containers);
    let dp = NetlinkDataplane::in_netns(h.path());
    let scope = Scope::Workloads(vec![c4.path()]);
    let (ops, report) = reconcile(&dp, &last, &scope).await.expect("reconcile");
    assert!(report.is_ok(), "{:#?}", report.errors);
    let c4_veth = veth_host_name("fe", "c4");
    assert!(matches!(&ops[0], Op::CreateVeth { host, .. } if *host == c4_veth));
    for op in &ops {
        let t = op.to_string();
        assert!(
            t.contains(&c4_veth) || t.contains(c4.name()),
            "touched something else: {t}"
        );
    }
    let (ops, _) = reconcile(&dp, &last, &scope).await.expect("reconcile");
    assert!(
        ops.is_empty(),
        "a second workload pass re-applied: {ops:#?}"
    );
    let ops = plan(
        &last,
        &dp.observe(&last, &Scope::All).await.expect("observe"),
    );
    assert!(
        ops.is_empty(),
        "the workload pass left work behind: {ops:#?}"
    );

    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("60 packets transmitted, 60 received"),
        "lost packets across {rounds} re-plans: {text}"
    );
    let reach = exec_out(
        c4.cmd("ping")
            .args(["-c", "1", "-W", "1", "-q", "172.36.0.2"]),
    );
    assert!(reach.status.success(), "c4 cannot reach c1");
}

/// Packets a link of `host` received, from `ip -s -j`.
fn rx_packets(host: &NetnsGuard, link: &str) -> u64 {
    let out = host.ip(&["-s", "-j", "link", "show", link]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}

#[tokio::test]
async fn overlay_two_hosts_vxlan_suppression_mtu_and_routing() {
    if !root() {
        return;
    }
    let (h1, h2) = (NetnsGuard::new("dpo"), NetnsGuard::new("dpo"));
    let (c1, c2, c3) = (
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
        NetnsGuard::new("dpc"),
    );
    h1.ip(&[
        "link",
        "add",
        "ul",
        "type",
        "veth",
        "peer",
        "name",
        "ul",
        "netns",
        h2.name(),
    ]);
    for (h, a) in [(&h1, "10.200.0.1/24"), (&h2, "10.200.0.2/24")] {
        h.ip(&["addr", "add", a, "dev", "ul"]);
        h.ip(&["link", "set", "ul", "up"]);
    }
    let (dp1, dp2) = (
        NetlinkDataplane::in_netns(h1.path()),
        NetlinkDataplane::in_netns(h2.path()),
    );
    let u1: IpAddr = "10.200.0.1".parse().expect("ip");
    assert_eq!(dp1.underlay_mtu(u1).await.expect("underlay mtu"), 1500);

    let networks = [
        net("fe", "172.34.0.0/24", Some("fd00:34::/64"), 0x3001),
        net("be", "172.35.0.0/24", None, 0x3002),
    ];
    let nodes = [node("h1", "10.200.0.1"), node("h2", "10.200.0.2")];
    let c2_mac = "02:00:00:34:00:03";
    let mut endpoints = vec![
        ep(
            "c1",
            "fe",
            "h1",
            "172.34.0.2",
            Some("fd00:34::2"),
            "02:00:00:34:00:02",
        ),
        ep("c2", "fe", "h2", "172.34.0.3", Some("fd00:34::3"), c2_mac),
        ep("c3", "be", "h2", "172.35.0.3", None, "02:00:00:35:00:03"),
    ];
    let on1 = [attach(&c1, &[("fe", "c1")])];
    let on2 = [attach(&c2, &[("fe", "c2")]), attach(&c3, &[("be", "c3")])];
    let u2: IpAddr = "10.200.0.2".parse().expect("ip");
    converge(
        &dp1,
        &desired("h1", Some(u1), &networks, &nodes, &endpoints, &on1),
    )
    .await;
    converge(
        &dp2,
        &desired("h2", Some(u2), &networks, &nodes, &endpoints, &on2),
    )
    .await;

    // ARP for the remote container is answered on h1 and never crosses: h2's VXLAN device
    // receives exactly the three echo requests.
    let before = rx_packets(&h2, "sfvx3001");
    let out = exec_ok(
        c1.cmd("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "1", "-q", "172.34.0.3"]),
    );
    assert!(out.contains("3 received"), "{out}");
    assert_eq!(
        rx_packets(&h2, "sfvx3001") - before,
        3,
        "only the echo requests crossed the overlay"
    );
    assert!(c1.ip(&["neigh", "show", "172.34.0.3"]).contains(c2_mac));

    assert!(ping(&c1, &["-6", "fd00:34::3"]), "IPv6 across hosts");
    assert!(
        ping(&c1, &["-M", "do", "-s", "1372", "172.34.0.3"]),
        "1400-byte packet with DF"
    );
    assert!(
        ping(&c1, &["-M", "do", "-s", "1422", "172.34.0.3"]),
        "full overlay MTU with DF"
    );
    assert!(
        !ping(&c1, &["-M", "do", "-s", "1423", "172.34.0.3"]),
        "above the overlay MTU must not pass with DF"
    );
    assert!(
        ping(&c1, &["172.35.0.3"]),
        "routing into another network on the sending node, then across"
    );

    // Isolation holds across hosts: each node drops routed traffic between unlinked networks.
    // Each host's source guard lists its own container ports (it drops the ones it does not).
    let fws = [
        (
            NftFirewall::in_netns(h1.path()),
            desired("h1", Some(u1), &networks, &nodes, &endpoints, &on1),
        ),
        (
            NftFirewall::in_netns(h2.path()),
            desired("h2", Some(u2), &networks, &nodes, &endpoints, &on2),
        ),
    ];
    for links in [vec![], vec![Link::new("fe", "be")]] {
        for (fw, d) in &fws {
            let spec = FirewallSpec {
                ports: planned_ports(d),
                ..FirewallSpec::from_model(&networks, &links, None).expect("spec")
            };
            fw.apply(&spec).await.expect("apply firewall");
        }
        assert_eq!(
            ping(&c1, &["172.35.0.3"]),
            !links.is_empty(),
            "across networks and hosts, links {links:?}"
        );
        assert!(
            ping(&c1, &["172.34.0.3"]),
            "same network across hosts always flows"
        );
    }
    for (fw, _) in &fws {
        fw.remove().await.expect("remove firewall");
    }

    let fdb =
        exec_ok(Command::new("bridge").args(["-n", h1.name(), "fdb", "show", "dev", "sfvx3001"]));
    assert!(
        fdb.contains(&format!("{c2_mac} dst 10.200.0.2 self permanent")),
        "{fdb}"
    );
    assert!(
        fdb.contains(&format!("{c2_mac} master sfbr3001 static")),
        "{fdb}"
    );
    assert!(
        !fdb.contains("00:00:00:00:00:00"),
        "no flooding entry: {fdb}"
    );
    let port = exec_ok(Command::new("bridge").args([
        "-n",
        h1.name(),
        "-d",
        "link",
        "show",
        "dev",
        "sfvx3001",
    ]));
    assert!(
        port.contains("learning off") && port.contains("neigh_suppress on"),
        "{port}"
    );

    // The remote endpoint goes away: its entries go, and so does reachability.
    endpoints.retain(|e| e.id != "c2");
    converge(
        &dp1,
        &desired("h1", Some(u1), &networks, &nodes, &endpoints, &on1),
    )
    .await;
    let fdb =
        exec_ok(Command::new("bridge").args(["-n", h1.name(), "fdb", "show", "dev", "sfvx3001"]));
    assert!(!fdb.contains(c2_mac), "{fdb}");
    assert!(!h1
        .ip(&["neigh", "show", "dev", "sfbr3001"])
        .contains("172.34.0.3"));

    for (dp, h) in [(&dp1, &h1), (&dp2, &h2)] {
        converge(dp, &DesiredHost::default()).await;
        assert!(sf_links(h).is_empty(), "left behind: {:?}", sf_links(h));
    }
}
