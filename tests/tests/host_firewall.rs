//! Host tier: the nftables ruleset against the real kernel, in a "host" namespace built by the
//! dataplane: isolation that follows links, internal networks without a way out (but with DNS on
//! their gateway), masquerade through the uplink, only shibafu's table touched, re-apply after a
//! flush, `nft -c` on rendered rulesets, and which traffic conntrack sees (same-network and VXLAN
//! traffic untracked; gateway, routed and masqueraded traffic tracked).

use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use shibafu_overlay::firewall::{Firewall, FirewallSpec, NftFirewall};
use shibafu_overlay::model::{Endpoint, Link, Network, SCHEMA_VERSION};
use shibafu_overlay::netlink::{reconcile, NetlinkDataplane, Scope};
use shibafu_overlay::netns;
use shibafu_overlay::plan::{DesiredHost, HostInputs, LocalContainer, LocalInterface};
use shibafu_tests::{exec_ok, exec_out, is_root, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier firewall test: needs root");
    }
    is_root()
}

fn net(name: &str, subnet: &str, vni: u32, internal: bool) -> Network {
    Network {
        schema: SCHEMA_VERSION,
        name: name.into(),
        subnet: subnet.parse().expect("subnet"),
        subnet6: None,
        vni,
        zone: format!("{name}.local"),
        mtu: None,
        internal,
        forwarders: vec![],
    }
}

/// One container per (network, address); returns the endpoint records and attachments. An
/// address `"V4,V6"` gives the container both.
fn containers(members: &[(&NetnsGuard, &str, &str)]) -> (Vec<Endpoint>, Vec<LocalContainer>) {
    let mut eps = Vec::new();
    let mut cs = Vec::new();
    for (i, (ns, network, ip)) in members.iter().enumerate() {
        let id = format!("c{i}");
        let (v4, v6) = match ip.split_once(',') {
            Some((v4, v6)) => (v4, Some(v6.parse().expect("ipv6"))),
            None => (*ip, None),
        };
        eps.push(Endpoint {
            schema: SCHEMA_VERSION,
            id: id.clone(),
            network: (*network).into(),
            name: id.clone(),
            aliases: vec![],
            node: "h".into(),
            ipv4: v4.parse().expect("ip"),
            ipv6: v6,
            mac: format!("02:00:00:00:00:{:02x}", i + 2),
            service: None,
            port: None,
            weight: 1,
        });
        cs.push(LocalContainer {
            netns: ns.path(),
            interfaces: vec![LocalInterface {
                network: (*network).into(),
                endpoint_id: id,
                ifname: "eth0".into(),
            }],
        });
    }
    (eps, cs)
}

/// Builds the networks and containers in `host` with the dataplane.
async fn build(host: &NetnsGuard, networks: &[Network], members: &[(&NetnsGuard, &str, &str)]) {
    let (endpoints, containers) = containers(members);
    let d = DesiredHost::build(&HostInputs {
        node: "h",
        underlay: None,
        underlay_mtu: 1500,
        networks,
        nodes: &[],
        endpoints: &endpoints,
        containers: &containers,
    })
    .expect("desired");
    let (_, report) = reconcile(&NetlinkDataplane::in_netns(host.path()), &d, &Scope::All)
        .await
        .expect("reconcile");
    assert!(report.is_ok(), "{:#?}", report.errors);
}

fn ping(from: &NetnsGuard, to: &str) -> bool {
    exec_out(from.cmd("ping").args(["-c", "1", "-W", "1", "-q", to]))
        .status
        .success()
}

fn nft(host: &NetnsGuard, args: &[&str]) -> String {
    exec_ok(host.cmd("nft").args(args))
}

/// A foreign table with a forward base chain, to prove ours never touches it.
fn foreign_table(host: &NetnsGuard) {
    nft(host, &["add", "table", "ip", "foreign"]);
    nft(
        host,
        &["add chain ip foreign keep { type filter hook forward priority 10; policy accept; }"],
    );
    nft(host, &["add", "rule", "ip", "foreign", "keep", "counter"]);
}

fn assert_foreign_intact(host: &NetnsGuard) {
    let t = nft(host, &["list", "table", "ip", "foreign"]);
    assert!(
        t.contains("chain keep") && t.contains("counter"),
        "foreign table changed: {t}"
    );
}

#[tokio::test]
async fn rendered_rulesets_pass_nft_check() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("fwc");
    let fw = NftFirewall::in_netns(h.path());
    let mut fe = net("fe", "172.21.0.0/24", 4096, false);
    fe.subnet6 = Some("fd00:21::/64".parse().expect("v6"));
    let nets = [
        fe,
        net("be", "172.22.0.0/24", 4097, false),
        net("db", "172.23.0.0/24", 4098, true),
    ];
    let mut be6 = net("be", "172.22.0.0/24", 4097, false);
    be6.subnet6 = Some("fd00:22::/64".parse().expect("v6"));
    // Overlapping subnets (the coordinator refuses them): the concatenated `intra` sets must
    // still load, since the kernel rejects overlapping elements there.
    let overlapping = [
        net("x", "10.50.0.0/16", 0x5001, false),
        net("y", "10.50.1.0/24", 0x5002, false),
        net("z", "10.50.1.0/24", 0x5003, true),
    ];
    let specs = [
        FirewallSpec::default(),
        FirewallSpec::from_model(&nets, &[], None).expect("spec"),
        FirewallSpec::from_model(
            &nets,
            &[Link::new("fe", "be"), Link::new("be", "db")],
            Some("eth0"),
        )
        .expect("spec"),
        FirewallSpec::from_model(&[nets[0].clone(), be6], &[], None).expect("spec"),
        FirewallSpec::from_model(&overlapping, &[], None).expect("spec"),
    ];
    for spec in &specs {
        fw.check(spec)
            .await
            .unwrap_or_else(|e| panic!("nft -c rejected {spec:?}: {e}"));
    }
    assert!(
        !nft(&h, &["list", "tables"]).contains("shibafu"),
        "a check must not commit"
    );
}

#[tokio::test]
async fn isolation_follows_links_and_other_tables_are_untouched() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("fwh");
    let (a1, a2, b1) = (
        NetnsGuard::new("fwc"),
        NetnsGuard::new("fwc"),
        NetnsGuard::new("fwc"),
    );
    let nets = [
        net("a", "172.37.0.0/24", 0x4001, false),
        net("b", "172.38.0.0/24", 0x4002, false),
    ];
    build(
        &h,
        &nets,
        &[
            (&a1, "a", "172.37.0.2"),
            (&a2, "a", "172.37.0.3"),
            (&b1, "b", "172.38.0.2"),
        ],
    )
    .await;
    foreign_table(&h);
    let fw = NftFirewall::in_netns(h.path());

    fw.apply(&FirewallSpec::from_model(&nets, &[], None).expect("spec"))
        .await
        .expect("apply");
    assert!(ping(&a1, "172.37.0.3"), "within a network");
    assert!(
        !ping(&a1, "172.38.0.2"),
        "across unlinked networks must fail"
    );
    assert!(!ping(&b1, "172.37.0.2"), "and the other way");

    fw.apply(&FirewallSpec::from_model(&nets, &[Link::new("a", "b")], None).expect("spec"))
        .await
        .expect("apply");
    assert!(ping(&a1, "172.38.0.2"), "linked networks route");
    assert!(ping(&b1, "172.37.0.2"), "both ways");

    fw.apply(&FirewallSpec::from_model(&nets, &[], None).expect("spec"))
        .await
        .expect("apply");
    assert!(!ping(&a1, "172.38.0.2"), "isolated again");
    assert!(ping(&a1, "172.37.0.3"));

    let tables = nft(&h, &["list", "tables"]);
    assert_eq!(
        tables.lines().filter(|l| l.contains("shibafu")).count(),
        1,
        "{tables}"
    );
    assert_foreign_intact(&h);
    fw.remove().await.expect("remove");
    assert!(!nft(&h, &["list", "tables"]).contains("shibafu"));
    assert_foreign_intact(&h);
    assert!(
        ping(&a1, "172.38.0.2"),
        "without our table the host routes as before"
    );
}

#[tokio::test]
async fn internal_network_has_no_way_out_and_others_masquerade() {
    if !root() {
        return;
    }
    let (h, outside) = (NetnsGuard::new("fwh"), NetnsGuard::new("fwo"));
    let (cn, ci) = (NetnsGuard::new("fwc"), NetnsGuard::new("fwc"));
    h.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        outside.name(),
    ]);
    h.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]);
    h.ip(&["link", "set", "up0", "up"]);
    outside.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
    outside.ip(&["link", "set", "eth0", "up"]);
    let nets = [
        net("n", "172.41.0.0/24", 0x4101, false),
        net("i", "172.42.0.0/24", 0x4102, true),
    ];
    build(
        &h,
        &nets,
        &[(&cn, "n", "172.41.0.2"), (&ci, "i", "172.42.0.2")],
    )
    .await;
    let fw = NftFirewall::in_netns(h.path());
    fw.apply(&FirewallSpec::from_model(&nets, &[], Some("up0")).expect("spec"))
        .await
        .expect("apply");

    // The outside has no route to container subnets: only masquerade makes replies come back.
    assert!(
        ping(&cn, "203.0.113.2"),
        "non-internal network reaches outside through masquerade"
    );
    assert!(!ping(&ci, "203.0.113.2"), "internal network has no way out");
    assert!(ping(&cn, "172.41.0.1"), "non-internal reaches its gateway");
    assert!(
        !ping(&ci, "172.42.0.1"),
        "internal reaches the host only for DNS"
    );

    // DNS to its own gateway gets through; another port on the same address does not.
    let bind = |port: u16| {
        netns::run_in(&h.path(), move || UdpSocket::bind(("172.42.0.1", port)))
            .expect("enter host namespace")
            .expect("bind on the gateway")
    };
    let (dns, other) = (bind(53), bind(54));
    for s in [&dns, &other] {
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
    }
    for port in [53, 54] {
        let script = format!("echo query > /dev/udp/172.42.0.1/{port}");
        exec_ok(ci.cmd("bash").args(["-c", &script]));
    }
    let mut buf = [0u8; 64];
    assert!(
        dns.recv_from(&mut buf).is_ok(),
        "DNS from an internal network must reach its gateway"
    );
    assert!(
        other.recv_from(&mut buf).is_err(),
        "other ports on the gateway must be dropped"
    );
}

#[tokio::test]
async fn ensure_reapplies_after_a_flush() {
    if !root() {
        return;
    }
    let (h, a, b) = (
        NetnsGuard::new("fwh"),
        NetnsGuard::new("fwc"),
        NetnsGuard::new("fwc"),
    );
    let nets = [
        net("a", "172.43.0.0/24", 0x4201, false),
        net("b", "172.44.0.0/24", 0x4202, false),
    ];
    build(
        &h,
        &nets,
        &[(&a, "a", "172.43.0.2"), (&b, "b", "172.44.0.2")],
    )
    .await;
    let fw = NftFirewall::in_netns(h.path());
    assert!(
        !fw.ensure().await.expect("ensure"),
        "nothing applied yet, nothing to restore"
    );
    fw.apply(&FirewallSpec::from_model(&nets, &[], None).expect("spec"))
        .await
        .expect("apply");
    assert!(
        !fw.ensure().await.expect("ensure"),
        "intact table is left alone"
    );

    exec_ok(Command::new("ip").args(["netns", "exec", h.name(), "nft", "flush", "ruleset"]));
    assert!(ping(&a, "172.44.0.2"), "flushed: isolation gone");
    assert!(
        fw.ensure().await.expect("ensure"),
        "missing table is restored"
    );
    assert!(!ping(&a, "172.44.0.2"), "isolation back");

    nft(&h, &["flush", "table", "inet", "shibafu"]);
    assert!(
        fw.ensure().await.expect("ensure"),
        "emptied table is restored"
    );
    assert!(!ping(&a, "172.44.0.2"));
    assert!(!fw.ensure().await.expect("ensure"));
}

/// One conntrack entry: the original direction, and where its replies go (after NAT).
#[derive(Debug)]
struct Flow {
    src: IpAddr,
    dst: IpAddr,
    dport: Option<u16>,
    reply_dst: Option<IpAddr>,
}

/// The conntrack table of `host`'s namespace (`/proc/net/nf_conntrack` follows the reader's
/// namespace; `conntrack` the tool need not be installed), or `None` when the kernel has no
/// procfs view of it.
fn flows(host: &NetnsGuard) -> Option<Vec<Flow>> {
    let out = exec_out(host.cmd("cat").arg("/proc/net/nf_conntrack"));
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let flows = text
        .lines()
        .map(|line| {
            let values = |key: &str| -> Vec<&str> {
                line.split_whitespace()
                    .filter_map(|t| t.strip_prefix(key)?.strip_prefix('='))
                    .collect()
            };
            let ip = |v: Option<&&str>| v.and_then(|a| a.parse::<IpAddr>().ok());
            let (src, dst) = (values("src"), values("dst"));
            Flow {
                src: ip(src.first()).expect("src in every entry"),
                dst: ip(dst.first()).expect("dst in every entry"),
                dport: values("dport").first().and_then(|p| p.parse().ok()),
                reply_dst: ip(dst.get(1)),
            }
        })
        .collect();
    Some(flows)
}

/// The entry of the flow from `src` to `dst` (and to `dport`, if given), if conntrack has one.
fn tracked(host: &NetnsGuard, src: &str, dst: &str, dport: Option<u16>) -> Option<Flow> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().expect("src"), dst.parse().expect("dst"));
    flows(host)
        .expect("conntrack table")
        .into_iter()
        .find(|f| f.src == src && f.dst == dst && (dport.is_none() || f.dport == dport))
}

/// Sends one UDP datagram from inside `from`'s namespace.
fn send_udp(from: &NetnsGuard, to: &str, port: u16) {
    let script = format!("echo probe > /dev/udp/{to}/{port}");
    exec_ok(from.cmd("bash").args(["-c", &script]));
}

/// A UDP socket bound to `addr:port` inside `ns`, with a receive timeout.
fn udp_socket(ns: &NetnsGuard, addr: &'static str, port: u16) -> UdpSocket {
    let s = netns::run_in(&ns.path(), move || UdpSocket::bind((addr, port)))
        .expect("enter namespace")
        .expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    s
}

#[tokio::test]
async fn conntrack_skips_same_network_and_vxlan_traffic_only() {
    if !root() {
        return;
    }
    let (h, outside) = (NetnsGuard::new("fwh"), NetnsGuard::new("fwo"));
    let (a1, a2, b1) = (
        NetnsGuard::new("fwc"),
        NetnsGuard::new("fwc"),
        NetnsGuard::new("fwc"),
    );
    let (i1, i2) = (NetnsGuard::new("fwc"), NetnsGuard::new("fwc"));
    h.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        outside.name(),
    ]);
    h.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]);
    h.ip(&["link", "set", "up0", "up"]);
    outside.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
    outside.ip(&["link", "set", "eth0", "up"]);
    let mut a = net("a", "172.48.0.0/24", 0x4301, false);
    a.subnet6 = Some("fd00:48::/64".parse().expect("v6"));
    let nets = [
        a,
        net("b", "172.49.0.0/24", 0x4302, false),
        net("i", "172.50.0.0/24", 0x4303, true),
    ];
    build(
        &h,
        &nets,
        &[
            (&a1, "a", "172.48.0.2,fd00:48::2"),
            (&a2, "a", "172.48.0.3,fd00:48::3"),
            (&b1, "b", "172.49.0.2"),
            (&i1, "i", "172.50.0.2"),
            (&i2, "i", "172.50.0.3"),
        ],
    )
    .await;
    // Bridged frames reach the inet hooks only through br_netfilter; make sure it is on in this
    // (our own) namespace, as it is on hosts running Docker or Kubernetes.
    let br_nf = h
        .cmd("sysctl")
        .args([
            "-q",
            "-w",
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !br_nf {
        eprintln!("br_netfilter not loaded: bridged frames never reach conntrack here");
    }
    let fw = NftFirewall::in_netns(h.path());
    fw.apply(&FirewallSpec::from_model(&nets, &[Link::new("a", "b")], Some("up0")).expect("spec"))
        .await
        .expect("apply");
    if flows(&h).is_none() {
        eprintln!("skipping: no /proc/net/nf_conntrack in this kernel");
        return;
    }

    // Same network (v4, v6, internal network too): untracked, and still delivered.
    assert!(ping(&a1, "172.48.0.3"), "within a network");
    assert!(ping(&a1, "fd00:48::3"), "within a network (v6)");
    assert!(ping(&i1, "172.50.0.3"), "within an internal network");
    for (src, dst) in [
        ("172.48.0.2", "172.48.0.3"),
        ("fd00:48::2", "fd00:48::3"),
        ("172.50.0.2", "172.50.0.3"),
    ] {
        let f = tracked(&h, src, dst, None);
        assert!(f.is_none(), "same-network flow tracked: {f:?}");
    }

    // The gateway stays tracked (DNS, and the internal network's INPUT rules use ct state).
    assert!(ping(&a1, "172.48.0.1") && ping(&a1, "fd00:48::1"));
    assert!(tracked(&h, "172.48.0.2", "172.48.0.1", None).is_some());
    assert!(tracked(&h, "fd00:48::2", "fd00:48::1", None).is_some());
    // Host-initiated flow into an internal network: its reply passes INPUT only as established.
    assert!(
        ping(&h, "172.50.0.2"),
        "the host reaches an internal container"
    );
    assert!(tracked(&h, "172.50.0.1", "172.50.0.2", None).is_some());
    assert!(
        !ping(&i1, "172.50.0.1"),
        "internal reaches the host only for DNS"
    );

    // Linked networks are routed and tracked; unlinked ones stay isolated.
    assert!(ping(&a1, "172.49.0.2"), "linked networks route");
    assert!(tracked(&h, "172.48.0.2", "172.49.0.2", None).is_some());
    assert!(!ping(&a1, "172.50.0.2"), "unlinked networks are isolated");
    assert!(!ping(&i1, "172.48.0.2"), "and the other way");

    // Outbound flows are tracked and masqueraded (the outside has no route back otherwise).
    assert!(ping(&a1, "203.0.113.2"), "masquerade to the outside");
    let out = tracked(&h, "172.48.0.2", "203.0.113.2", None).expect("outbound flow tracked");
    assert_eq!(
        out.reply_dst,
        Some("203.0.113.1".parse().expect("ip")),
        "{out:?}"
    );

    // VXLAN port: the host's own packets, sent and received, are untracked.
    let vxlan = 4789;
    let at_host = udp_socket(&h, "203.0.113.1", vxlan);
    let at_outside = udp_socket(&outside, "203.0.113.2", vxlan);
    let mut buf = [0u8; 64];
    send_udp(&outside, "203.0.113.1", vxlan);
    at_host.recv_from(&mut buf).expect("received by the host");
    assert!(tracked(&h, "203.0.113.2", "203.0.113.1", Some(vxlan)).is_none());
    send_udp(&h, "203.0.113.2", vxlan);
    let (_, from) = at_outside.recv_from(&mut buf).expect("sent by the host");
    assert_eq!(from.ip().to_string(), "203.0.113.1");
    assert!(tracked(&h, "203.0.113.1", "203.0.113.2", Some(vxlan)).is_none());
    // ... but a container's packets to that port are still tracked and masqueraded,
    send_udp(&a1, "203.0.113.2", vxlan);
    let (_, from) = at_outside.recv_from(&mut buf).expect("sent by a container");
    assert_eq!(from.ip().to_string(), "203.0.113.1", "masqueraded");
    assert!(tracked(&h, "172.48.0.2", "203.0.113.2", Some(vxlan)).is_some());
    // ... and so are the host's packets into a bridge.
    send_udp(&h, "172.48.0.2", vxlan);
    assert!(tracked(&h, "172.48.0.1", "172.48.0.2", Some(vxlan)).is_some());

    // Control: without the notrack rules, the same bridged ping is tracked (so the check above
    // is meaningful), and ensure() notices the missing rules and puts them back.
    nft(&h, &["flush", "chain", "inet", "shibafu", "prerouting"]);
    assert!(ping(&a2, "172.48.0.2"));
    if br_nf {
        assert!(
            tracked(&h, "172.48.0.3", "172.48.0.2", None).is_some(),
            "bridged frames reach conntrack through br_netfilter"
        );
    }
    assert!(fw.ensure().await.expect("ensure"), "missing rules restored");
    assert!(
        nft(&h, &["list", "chain", "inet", "shibafu", "prerouting"]).contains("@intra4 notrack")
    );
    assert!(ping(&a1, "172.48.0.3"));
    assert!(tracked(&h, "172.48.0.2", "172.48.0.3", None).is_none());
}
