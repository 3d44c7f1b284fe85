//! Lab tier, network rules: one set of rules for every network, at creation and on every node.
//! A network the coordinator refuses leaves nothing; a network one node cannot build (its
//! underlay too small for IPv6) or that nobody should build (a bad value written straight into
//! etcd) is skipped where it fails, with the reason in `shibafu network inspect`, and every
//! other network goes on. Driven with the real CLI, `ip`, `etcdctl` and ping.

use std::process::Output;
use std::time::Duration;

use shibafu_tests::{root_or_skip, text, wait_until, Lab};

const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);

fn lab(nodes: usize) -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    Some(Lab::up(nodes))
}

fn inspect(lab: &Lab, network: &str) -> serde_json::Value {
    let out = lab.cli_ok("node1", &["network", "inspect", network]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect is not JSON ({e}): {out}"))
}

/// `(node, reason)` of every problem `network inspect` shows.
fn problems(lab: &Lab, network: &str) -> Vec<(String, String)> {
    inspect(lab, network)["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                    (field("node"), field("reason"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_of(lab: &Lab, network: &str) -> String {
    let vni = inspect(lab, network)["vni"].as_u64().expect("vni");
    format!("sfbr{vni:x}")
}

fn has_link(lab: &Lab, node: &str, link: &str) -> bool {
    lab.exec(node, &["ip", "link", "show", link])
        .status
        .success()
}

fn run(lab: &Lab, node: &str, name: &str, network: &str) -> Output {
    lab.cli(
        node,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--",
            "sleep",
            "3600",
        ],
    )
}

fn pings(lab: &Lab, node: &str, from: &str, to: &str) -> bool {
    lab.cli(node, &["exec", from, "ping", "-c1", "-W2", to])
        .status
        .success()
}

/// Sets NODE's underlay MTU and restarts its agent, which reads the MTU when it starts.
fn set_underlay_mtu(lab: &Lab, node: &str, mtu: &str) {
    lab.exec_ok(node, &["ip", "link", "set", "eth0", "mtu", mtu]);
    lab.lab_ok(&["stop", node]);
    lab.lab_ok(&["start", node]);
}

#[test]
fn an_ipv6_mtu_below_1280_is_refused_and_a_node_too_small_for_ipv6_skips_only_that_network() {
    let Some(lab) = lab(2) else { return };
    let refused = lab.cli(
        "node1",
        &[
            "network",
            "create",
            "dual6",
            "172.26.0.0/24",
            "--subnet6",
            "fd00:26::/64",
            "--mtu",
            "1200",
        ],
    );
    assert!(
        !refused.status.success(),
        "an IPv6 network with MTU 1200 was created"
    );
    let err = text(&refused.stderr);
    assert!(err.contains("1280"), "the refusal does not say why: {err}");
    let ls = lab.cli_ok("node1", &["network", "ls"]);
    assert!(!ls.contains("dual6"), "a refused network is listed: {ls}");

    // node2's underlay carries 1300 bytes: its overlay (1250) is too small for IPv6.
    set_underlay_mtu(&lab, "node2", "1300");
    lab.cli_ok(
        "node1",
        &[
            "network",
            "create",
            "dual",
            "172.27.0.0/24",
            "--subnet6",
            "fd00:27::/64",
        ],
    );
    lab.cli_ok("node1", &["network", "create", "plain", "172.28.0.0/24"]);
    assert!(
        wait_until(SETTLE, POLL, || {
            let p = problems(&lab, "dual");
            p.len() == 1 && p[0].0 == "node2" && p[0].1.contains("1280")
        }),
        "network inspect does not show node2's reason: {:?}",
        problems(&lab, "dual")
    );
    assert!(problems(&lab, "plain").is_empty());
    let dual = bridge_of(&lab, "dual");
    // node2 refuses a container on dual, saying why, and serves its other networks.
    let out = run(&lab, "node2", "six", "dual");
    assert!(
        !out.status.success(),
        "node2 attached to a network it does not build"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("not built on this node") && err.contains("1280"),
        "{err}"
    );
    for (node, name, network) in [
        ("node2", "a", "plain"),
        ("node1", "b", "plain"),
        ("node1", "d", "dual"),
    ] {
        let out = run(&lab, node, name, network);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    // Nodes build the networks their containers use: node1 dual now, node2 not.
    assert!(has_link(&lab, "node1", &dual), "node1 did not build dual");
    assert!(!has_link(&lab, "node2", &dual), "node2 built dual anyway");
    assert!(
        pings(&lab, "node2", "a", "b"),
        "plain does not work across nodes"
    );

    // A larger underlay fixes it: node2 builds dual and the report goes.
    set_underlay_mtu(&lab, "node2", "1500");
    assert!(
        wait_until(SETTLE, POLL, || problems(&lab, "dual").is_empty()),
        "the problem outlived its cause: {:?}",
        problems(&lab, "dual")
    );
    let out = run(&lab, "node2", "six", "dual");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        has_link(&lab, "node2", &dual),
        "node2 attached without the bridge"
    );
    assert!(
        pings(&lab, "node2", "six", "d"),
        "dual does not work across nodes"
    );
    lab.down();
}

#[test]
fn bad_networks_written_straight_into_etcd_stop_no_node() {
    let Some(lab) = lab(2) else { return };
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    for (node, name) in [("node1", "a"), ("node2", "b")] {
        let out = run(&lab, node, name, "frontend");
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    // Past the coordinator's checks: an invalid zone, and a subnet inside frontend's.
    let bad = [
        (
            "zbad",
            r#"{"schema":1,"name":"zbad","subnet":"172.29.0.0/24","vni":4200,"zone":"bad..zone","internal":false}"#,
        ),
        (
            "zlap",
            r#"{"schema":1,"name":"zlap","subnet":"172.21.0.128/25","vni":4201,"zone":"zlap.local","internal":false}"#,
        ),
    ];
    for (name, value) in bad {
        let key = format!("/shibafu/v1/networks/{name}");
        lab.exec_ok("node1", &["etcdctl", "put", &key, value]);
    }
    let reported = |network: &str, word: &str| {
        let p = problems(&lab, network);
        p.len() == 2 && p.iter().all(|(_, reason)| reason.contains(word))
    };
    assert!(
        wait_until(SETTLE, POLL, || reported("zbad", "zone")),
        "zbad: {:?}",
        problems(&lab, "zbad")
    );
    assert!(
        wait_until(SETTLE, POLL, || reported(
            "zlap",
            "overlaps network \"frontend\""
        )),
        "zlap: {:?}",
        problems(&lab, "zlap")
    );
    // Every node goes on with the others: a new container, reachable by name across nodes.
    let out = run(&lab, "node2", "c", "frontend");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(pings(&lab, "node1", "a", "c"), "frontend stopped working");
    assert!(pings(&lab, "node2", "c", "a"));
    // Removing them removes the reports.
    for name in ["zbad", "zlap"] {
        lab.cli_ok("node1", &["network", "rm", name]);
    }
    assert!(
        wait_until(SETTLE, POLL, || {
            lab.exec_ok(
                "node1",
                &[
                    "etcdctl",
                    "get",
                    "--prefix",
                    "--keys-only",
                    "/shibafu/v1/problems/",
                ],
            )
            .trim()
            .is_empty()
        }),
        "problem reports outlived their networks"
    );
    assert!(pings(&lab, "node1", "a", "b"));
    lab.down();
}

#[test]
fn a_node_builds_the_networks_its_containers_use_and_those_linked_to_them() {
    let Some(lab) = lab(2) else { return };
    lab.cli_ok("node1", &["network", "create", "left", "172.23.0.0/24"]);
    lab.cli_ok("node1", &["network", "create", "right", "172.24.0.0/24"]);
    let (left, right) = (bridge_of(&lab, "left"), bridge_of(&lab, "right"));
    let out = run(&lab, "node1", "l1", "left");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(has_link(&lab, "node1", &left), "node1 did not build left");
    assert!(
        !has_link(&lab, "node1", &right),
        "node1 built right, unused there"
    );
    assert!(
        !has_link(&lab, "node2", &left),
        "node2 built left, unused there"
    );

    let out = run(&lab, "node2", "r2", "right");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Linked: each node routes to the other network itself, so it builds it.
    lab.cli_ok("node1", &["network", "connect-networks", "left", "right"]);
    let built = |node: &str, bridge: &str| {
        wait_until(Duration::from_secs(5), POLL, || {
            has_link(&lab, node, bridge)
        })
    };
    assert!(
        built("node2", &left) && built("node1", &right),
        "links not built"
    );
    let l1 = address_of(&lab, "node1", "l1");
    assert!(
        wait_until(Duration::from_secs(5), POLL, || pings(
            &lab, "node2", "r2", &l1
        )),
        "linked networks do not reach each other across nodes"
    );

    // Isolated again: the networks nothing uses go, and the way stays closed.
    lab.cli_ok("node1", &["network", "isolate", "left", "right"]);
    let gone = |node: &str, bridge: &str| {
        wait_until(Duration::from_secs(5), POLL, || {
            !has_link(&lab, node, bridge)
        })
    };
    assert!(
        gone("node2", &left) && gone("node1", &right),
        "idle networks kept"
    );
    assert!(
        !pings(&lab, "node2", "r2", &l1),
        "isolated networks still reach"
    );
    // The last container of a network on a node takes the network off the node.
    lab.cli_ok("node1", &["rm", "-f", "l1"]);
    assert!(gone("node1", &left), "node1 kept left without containers");
    lab.down();
}

/// The IPv4 address of container NAME on NODE (its first interface), from its agent.
fn address_of(lab: &Lab, node: &str, name: &str) -> String {
    let info = lab
        .agent_get(node, &format!("/v1/containers/{name}"))
        .expect("container info");
    info["interfaces"][0]["ipv4"]
        .as_str()
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| panic!("{name} has no address: {info}"))
}
