//! Host tier: the nftables ruleset against the real kernel, in a "host" namespace built by the
//! dataplane: isolation that follows links, internal networks without a way out (but with DNS on
//! their gateway), masquerade through the uplink, only shibafu's table touched, re-apply after a
//! flush, `nft -c` on rendered rulesets. Which traffic conntrack sees: host_conntrack.rs.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use shibafu_overlay::firewall::{Firewall, FirewallSpec, NftFirewall, PortBinding};
use shibafu_overlay::model::Link;
use shibafu_overlay::model::MacAddr;
use shibafu_overlay::netns;
use shibafu_tests::firewall::{build, net, nft, ping, spec, uplink};
use shibafu_tests::{exec_ok, is_root, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier firewall test: needs root");
    }
    is_root()
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
    let members = [
        (&a1, "a", "172.37.0.2"),
        (&a2, "a", "172.37.0.3"),
        (&b1, "b", "172.38.0.2"),
    ];
    build(&h, &nets, &members).await;
    foreign_table(&h);
    let fw = NftFirewall::in_netns(h.path());

    fw.apply(&spec(&nets, &[], None, &members))
        .await
        .expect("apply");
    assert!(ping(&a1, "172.37.0.3"), "within a network");
    assert!(
        !ping(&a1, "172.38.0.2"),
        "across unlinked networks must fail"
    );
    assert!(!ping(&b1, "172.37.0.2"), "and the other way");

    fw.apply(&spec(&nets, &[Link::new("a", "b")], None, &members))
        .await
        .expect("apply");
    assert!(ping(&a1, "172.38.0.2"), "linked networks route");
    assert!(ping(&b1, "172.37.0.2"), "both ways");

    fw.apply(&spec(&nets, &[], None, &members))
        .await
        .expect("apply");
    assert!(!ping(&a1, "172.38.0.2"), "isolated again");
    assert!(ping(&a1, "172.37.0.3"));

    let tables = nft(&h, &["list", "tables"]);
    let ours: Vec<&str> = tables.lines().filter(|l| l.contains("shibafu")).collect();
    assert_eq!(
        ours,
        ["table inet shibafu", "table bridge shibafu"],
        "the main table and the source guard, nothing else: {tables}"
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
    uplink(&h, &outside);
    let nets = [
        net("n", "172.41.0.0/24", 0x4101, false),
        net("i", "172.42.0.0/24", 0x4102, true),
    ];
    let members = [(&cn, "n", "172.41.0.2"), (&ci, "i", "172.42.0.2")];
    build(&h, &nets, &members).await;
    let fw = NftFirewall::in_netns(h.path());
    fw.apply(&spec(&nets, &[], Some("up0"), &members))
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
    let members = [(&a, "a", "172.43.0.2"), (&b, "b", "172.44.0.2")];
    build(&h, &nets, &members).await;
    let fw = NftFirewall::in_netns(h.path());
    assert!(
        !fw.ensure().await.expect("ensure"),
        "nothing applied yet, nothing to restore"
    );
    fw.apply(&spec(&nets, &[], None, &members))
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

#[tokio::test]
async fn a_port_coming_or_going_changes_only_the_guards_elements() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("fwg");
    let fw = NftFirewall::in_netns(h.path());
    let nets = [net("a", "172.45.0.0/24", 0x4301, false)];
    let port = |name: &str, last: u8| PortBinding {
        port: name.into(),
        mac: MacAddr([2, 0x42, 172, 45, 0, last]),
        ipv4: std::net::Ipv4Addr::new(172, 45, 0, last),
        ipv6: None,
    };
    let with = |ports: Vec<PortBinding>| FirewallSpec {
        ports: ports.into(),
        ..FirewallSpec::from_model(&nets, &[], None).expect("spec")
    };
    fw.apply(&with(vec![port("sfe1", 2)])).await.expect("first");
    // A handle that survives element changes and not a reload of the table.
    let handle = |h: &NetnsGuard| {
        let t = nft(h, &["-a", "list", "table", "bridge", "shibafu"]);
        t.lines()
            .next()
            .and_then(|l| l.split("# handle ").nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no table handle in: {t}"))
    };
    let before = handle(&h);
    fw.apply(&with(vec![port("sfe1", 2), port("sfe2", 3)]))
        .await
        .expect("second port");
    let set = |name: &str| nft(&h, &["list", "set", "bridge", "shibafu", name]);
    assert!(set("ports").contains("\"sfe2\""), "{}", set("ports"));
    assert!(
        set("addrs4").contains("\"sfe2\" . 172.45.0.3"),
        "{}",
        set("addrs4")
    );
    fw.apply(&with(vec![port("sfe2", 3)]))
        .await
        .expect("first gone");
    assert!(!set("ports").contains("\"sfe1\""), "{}", set("ports"));
    assert!(!set("macs").contains("\"sfe1\""), "{}", set("macs"));
    assert_eq!(handle(&h), before, "the guard's table was reloaded");
    assert!(
        !fw.ensure().await.expect("ensure"),
        "the table is as applied"
    );
    // Anything else changing still loads the whole ruleset.
    let more = [nets[0].clone(), net("b", "172.46.0.0/24", 0x4302, false)];
    let spec = FirewallSpec {
        ports: vec![port("sfe2", 3)].into(),
        ..FirewallSpec::from_model(&more, &[], None).expect("spec")
    };
    fw.apply(&spec).await.expect("network added");
    assert_ne!(
        handle(&h),
        before,
        "a new network did not reload the ruleset"
    );
    assert!(set("ports").contains("\"sfe2\""));
}

#[tokio::test]
async fn a_container_port_the_guard_does_not_list_sends_nothing() {
    if !root() {
        return;
    }
    let h = NetnsGuard::new("fwh");
    let (a, b) = (NetnsGuard::new("fwc"), NetnsGuard::new("fwc"));
    let nets = [net("a", "172.53.0.0/24", 0x4601, false)];
    let members = [(&a, "a", "172.53.0.2"), (&b, "a", "172.53.0.3")];
    build(&h, &nets, &members).await;
    let fw = NftFirewall::in_netns(h.path());
    // b's port exists on the bridge but is not listed yet: nothing of it gets through, its
    // replies to a included.
    let mut early = spec(&nets, &[], None, &members);
    let listed: Vec<PortBinding> = early
        .ports
        .iter()
        .filter(|p| p.ipv4.octets()[3] != 3)
        .cloned()
        .collect();
    assert_eq!(listed.len(), 1, "a's port only");
    early.ports = listed.into();
    fw.apply(&early).await.expect("apply");
    assert!(!ping(&a, "172.53.0.3"), "an unlisted port answered");
    assert!(
        !ping(&b, "172.53.0.2"),
        "an unlisted port reached a neighbour"
    );
    fw.apply(&spec(&nets, &[], None, &members))
        .await
        .expect("apply");
    assert!(ping(&a, "172.53.0.3"), "listed, it answers");
    assert!(ping(&b, "172.53.0.2"), "and reaches its neighbour");
}
