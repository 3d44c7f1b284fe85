//! Host tier: which traffic conntrack sees under shibafu's table, with br_netfilter on:
//! same-network and VXLAN traffic untracked; gateway, routed and masqueraded traffic tracked.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use shibafu_overlay::firewall::{Firewall, NftFirewall};
use shibafu_overlay::model::Link;
use shibafu_overlay::netns;
use shibafu_tests::firewall::{build, net, nft, ping, spec, uplink};
use shibafu_tests::{exec_ok, exec_out, is_root, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier conntrack test: needs root");
    }
    is_root()
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
    uplink(&h, &outside);
    let mut a = net("a", "172.48.0.0/24", 0x4301, false);
    a.subnet6 = Some("fd00:48::/64".parse().expect("v6"));
    let nets = [
        a,
        net("b", "172.49.0.0/24", 0x4302, false),
        net("i", "172.50.0.0/24", 0x4303, true),
    ];
    let members = [
        (&a1, "a", "172.48.0.2,fd00:48::2"),
        (&a2, "a", "172.48.0.3,fd00:48::3"),
        (&b1, "b", "172.49.0.2"),
        (&i1, "i", "172.50.0.2"),
        (&i2, "i", "172.50.0.3"),
    ];
    build(&h, &nets, &members).await;
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
    fw.apply(&spec(&nets, &[Link::new("a", "b")], Some("up0"), &members))
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
    // A container's flow *from* port 4789 leaves from another port, so its replies (which would
    // otherwise come back to the untracked VXLAN port) are translated back to it.
    let in_a1 = udp_socket(&a1, "172.48.0.2", vxlan);
    let peer = udp_socket(&outside, "203.0.113.2", 5999);
    in_a1.send_to(b"hi", "203.0.113.2:5999").expect("send");
    let (_, from) = peer
        .recv_from(&mut buf)
        .expect("sent from the container's port 4789");
    assert_eq!(from.ip().to_string(), "203.0.113.1", "masqueraded");
    assert_ne!(
        from.port(),
        vxlan,
        "the source port must move off the VXLAN port"
    );
    peer.send_to(b"back", from).expect("reply");
    let (n, _) = in_a1
        .recv_from(&mut buf)
        .expect("the reply reaches the container");
    assert_eq!(&buf[..n], b"back");

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
