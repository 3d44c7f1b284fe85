//! Host tier: the bridge of a policed network calls the inet netfilter hooks itself (its
//! `nf_call_iptables` / `nf_call_ip6tables` on) while the namespace's `bridge-nf-call-*` sysctls
//! are 0 (`--no-bridge-netfilter`), so its bridged frames reach `table inet` chains and
//! conntrack; other networks keep the fast path. Flipping the switches touches nothing else
//! (ports, learned MACs, traffic), and a second plan is empty. Bridges run without multicast
//! snooping, and IPv6 neighbour discovery (multicast) still reaches every port.

use std::collections::BTreeSet;

use shibafu_overlay::model::Network;
use shibafu_overlay::netlink::{reconcile, Dataplane, NetlinkDataplane, Scope};
use shibafu_overlay::plan::{plan, DesiredHost, Op};
use shibafu_tests::firewall::{self, net, nft, ping};
use shibafu_tests::{exec_ok, exec_out, is_root, wait_until, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier bridge netfilter test: needs root");
    }
    is_root()
}

/// The desired state of single host "h", br_netfilter sysctls kept at 0, `policed` policed.
fn desired(
    networks: &[Network],
    members: &[(&NetnsGuard, &str, &str)],
    policed: &[&str],
) -> DesiredHost {
    let mut d = firewall::desired(networks, members, policed);
    d.bridge_netfilter_off = true;
    d
}

/// Applies `d`, requires success and an empty second plan; returns the ops applied.
async fn converge(dp: &NetlinkDataplane, d: &DesiredHost) -> Vec<Op> {
    let (ops, report) = reconcile(dp, d, &Scope::All).await.expect("reconcile");
    assert!(report.is_ok(), "{:#?}\nops: {ops:#?}", report.errors);
    let observed = dp.observe(d, &Scope::All).await.expect("observe");
    let again = plan(d, &observed);
    assert!(again.is_empty(), "second plan not empty: {again:#?}");
    ops
}

/// The word after `key` in `text`.
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

/// `(nf_call_iptables, nf_call_ip6tables)` of `bridge`, as `ip -d link show` reports them.
fn switches(h: &NetnsGuard, bridge: &str) -> (bool, bool) {
    let out = h.ip(&["-d", "link", "show", bridge]);
    let on = |key: &str| match after(&out, key) {
        Some("1") => true,
        Some("0") => false,
        _ => panic!("no {key} in: {out}"),
    };
    (on("nf_call_iptables"), on("nf_call_ip6tables"))
}

/// Packets of the named counter `name` in `table inet sftest`.
fn counted(h: &NetnsGuard, name: &str) -> u64 {
    let out = nft(h, &["list", "counter", "inet", "sftest", name]);
    after(&out, "packets")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no packets in: {out}"))
}

/// The MACs `bridge` has learned on its ports (dynamic FDB entries).
fn learned(h: &NetnsGuard, bridge: &str) -> BTreeSet<String> {
    exec_ok(h.cmd("bridge").args(["fdb", "show", "br", bridge]))
        .lines()
        .filter(|l| !l.contains("permanent") && !l.contains("static"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Names of the ports of `bridge`.
fn ports(h: &NetnsGuard, bridge: &str) -> Vec<String> {
    h.ip(&["-o", "link", "show", "master", bridge])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Counts the forwarded bridged frames of both bridges: `a` only those conntrack knows as part
/// of an established flow, `b` all of them.
fn count_bridged_frames(h: &NetnsGuard, a: &str, b: &str) {
    nft(h, &["add", "table", "inet", "sftest"]);
    nft(h, &["add", "counter", "inet", "sftest", "a"]);
    nft(h, &["add", "counter", "inet", "sftest", "b"]);
    let chain = "{ type filter hook forward priority 0 ; }";
    nft(h, &["add", "chain", "inet", "sftest", "forward", chain]);
    for (bridge, rule) in [
        (a, "ct state established counter name a"),
        (b, "counter name b"),
    ] {
        let rule = format!("iifname {bridge} oifname {bridge} {rule}");
        nft(h, &["add", "rule", "inet", "sftest", "forward", &rule]);
    }
}

#[tokio::test]
async fn a_policed_network_bridge_calls_the_inet_hooks_with_the_sysctls_off() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("bnh");
    let (a1, a2, b1, b2) = (
        NetnsGuard::new("bnc"),
        NetnsGuard::new("bnc"),
        NetnsGuard::new("bnc"),
        NetnsGuard::new("bnc"),
    );
    let nets = [
        net("a", "172.51.0.0/24", 0x4501, false),
        net("b", "172.52.0.0/24", 0x4502, false),
    ];
    let members = [
        (&a1, "a", "172.51.0.2"),
        (&a2, "a", "172.51.0.3"),
        (&b1, "b", "172.52.0.2"),
        (&b2, "b", "172.52.0.3"),
    ];
    let (bra, brb) = (nets[0].bridge_name(), nets[1].bridge_name());
    let switch = |on| Op::SetBridgeNetfilter {
        name: bra.clone(),
        on,
    };
    let dp = NetlinkDataplane::in_netns(h.path());

    // Built policed: the switches go on with the bridge; b keeps the fast path.
    let ops = converge(&dp, &desired(&nets, &members, &["a"])).await;
    assert!(ops.contains(&switch(true)), "{ops:#?}");
    assert_eq!(switches(&h, &bra), (true, true));
    assert_eq!(switches(&h, &brb), (false, false));

    // The switches act only through br_netfilter's hooks: check the traffic where it is loaded.
    let sysctl = exec_out(
        h.cmd("cat")
            .arg("/proc/sys/net/bridge/bridge-nf-call-iptables"),
    );
    let br_nf = sysctl.status.success();
    if br_nf {
        let v = String::from_utf8_lossy(&sysctl.stdout);
        assert_eq!(v.trim(), "0", "the plan keeps the sysctl at 0");
        count_bridged_frames(&h, &bra, &brb);
    } else {
        eprintln!("br_netfilter not loaded: not checking that bridged frames reach the hooks");
    }
    assert!(ping(&a1, "172.51.0.3") && ping(&b1, "172.52.0.3"));
    if br_nf {
        assert!(
            counted(&h, "a") > 0,
            "a's bridged reply seen as established"
        );
        assert_eq!(counted(&h, "b"), 0, "b's frames skip the inet hooks");
    }
    let (ports_a, learned_a) = (ports(&h, &bra), learned(&h, &bra));
    assert_eq!(ports_a.len(), 2, "{ports_a:?}");
    assert!(learned_a.contains("02:00:00:00:00:03"), "{learned_a:?}");

    // No longer policed: one op, and the ports and learned MACs stay.
    let unpoliced = desired(&nets, &members, &[]);
    assert_eq!(converge(&dp, &unpoliced).await, [switch(false)]);
    assert_eq!(switches(&h, &bra), (false, false));
    assert_eq!(ports(&h, &bra), ports_a);
    assert!(learned(&h, &bra).is_superset(&learned_a));
    let before = br_nf.then(|| counted(&h, "a"));
    assert!(ping(&a1, "172.51.0.3"));
    if let Some(before) = before {
        assert_eq!(counted(&h, "a"), before, "the fast path again");
    }

    // Policed again, on the bridge with its ports: one op, traffic goes on through the hooks.
    assert_eq!(
        converge(&dp, &desired(&nets, &members, &["a"])).await,
        [switch(true)]
    );
    assert_eq!(switches(&h, &bra), (true, true));
    assert_eq!(ports(&h, &bra), ports_a);
    assert!(learned(&h, &bra).is_superset(&learned_a));
    assert!(ping(&a2, "172.51.0.2"));
    if let Some(before) = before {
        assert!(counted(&h, "a") > before, "the hooks see a's frames again");
    }
    assert!(ping(&b2, "172.52.0.2"));
    if br_nf {
        assert_eq!(counted(&h, "b"), 0);
    }
}

#[tokio::test]
async fn bridges_run_without_multicast_snooping_and_neighbour_discovery_still_works() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("bmh");
    let (c1, c2) = (NetnsGuard::new("bmc"), NetnsGuard::new("bmc"));
    let nets = [Network {
        subnet6: Some("fd51::/64".parse().expect("subnet6")),
        ..net("a", "172.51.0.0/24", 0x4511, false)
    }];
    let members = [
        (&c1, "a", "172.51.0.2,fd51::2"),
        (&c2, "a", "172.51.0.3,fd51::3"),
    ];
    let bridge = nets[0].bridge_name();
    let snooping = |h: &NetnsGuard| {
        let out = h.ip(&["-d", "link", "show", &bridge]);
        after(&out, "mcast_snooping")
            .unwrap_or_else(|| panic!("no mcast_snooping in: {out}"))
            .to_string()
    };
    let dp = NetlinkDataplane::in_netns(h.path());
    let d = desired(&nets, &members, &[]);
    let ops = converge(&dp, &d).await;
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Op::DisableMulticastSnooping { .. })),
        "created without it: {ops:#?}"
    );
    assert_eq!(snooping(&h), "0");
    // Neighbour solicitations go to solicited-node multicast groups: flooded to every port.
    let v6 = wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(200),
        || ping(&c1, "fd51::3"),
    );
    assert!(v6, "IPv6 across the bridge without snooping");
    let ports_before = ports(&h, &bridge);

    // Turned on by hand (or a bridge of an older agent): one op turns it off again.
    exec_ok(h.cmd("ip").args([
        "link",
        "set",
        &bridge,
        "type",
        "bridge",
        "mcast_snooping",
        "1",
    ]));
    assert_eq!(snooping(&h), "1");
    let off = Op::DisableMulticastSnooping {
        name: bridge.clone(),
    };
    assert_eq!(converge(&dp, &d).await, [off]);
    assert_eq!(snooping(&h), "0");
    assert_eq!(ports(&h, &bridge), ports_before);
    assert!(ping(&c2, "fd51::2") && ping(&c2, "172.51.0.2"));
}
