//! Lab tier: the agent repairs what someone deletes by hand on its node within 2 s (kernel
//! events, not the 30 s resync): the network's bridge, its VXLAN device, a static FDB entry of a
//! remote container, shibafu's nftables table and a container's veth, one at a time; after each,
//! a container on node1 pings one on node2 again.

use std::time::{Duration, Instant};

use serde_json::Value;
use shibafu_tests::{is_root, text, wait_until, Lab};

/// Within this the agent must have put the piece back (the bound).
const REPAIRED: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// Runs ARGS in node1; its stdout (whatever the status).
fn node1(lab: &Lab, args: &[&str]) -> String {
    text(&lab.exec("node1", args).stdout)
}

/// Runs ARGS in node1 and asserts it succeeded.
fn damage(lab: &Lab, what: &str, args: &[&str]) {
    let out = lab.exec("node1", args);
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
}

/// The first link of node1 whose name starts with `prefix`.
fn link(lab: &Lab, prefix: &str) -> String {
    node1(lab, &["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* link on node1"))
}

/// Waits for `cond` up to [`REPAIRED`]; the time it took.
fn repaired(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    assert!(
        wait_until(REPAIRED, POLL, &mut cond),
        "{what}: not repaired within {REPAIRED:?}"
    );
    start.elapsed()
}

fn pings(lab: &Lab) -> bool {
    wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
        lab.cli("node1", &["exec", "c1", "ping", "-c1", "-W1", "c2"])
            .status
            .success()
    })
}

#[test]
fn deleted_pieces_come_back_within_two_seconds() {
    if !is_root() {
        eprintln!("skipping lab-tier repair test: needs root");
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "front", "172.27.0.0/24"]);
    lab.run_idle("node1", "c1", "front");
    lab.run_idle("node2", "c2", "front");
    assert!(pings(&lab), "c1 reaches c2 before any damage");
    let (bridge, vxlan) = (link(&lab, "sfbr"), link(&lab, "sfvx"));
    let mut took = Vec::new();

    damage(&lab, "delete the bridge", &["ip", "link", "del", &bridge]);
    took.push((
        "bridge",
        repaired("bridge", || {
            node1(&lab, &["ip", "-o", "link", "show", "master", &bridge]).contains("sfe")
        }),
    ));
    assert!(pings(&lab), "after the bridge came back");

    damage(
        &lab,
        "delete the VXLAN device",
        &["ip", "link", "del", &vxlan],
    );
    took.push((
        "vxlan",
        repaired("vxlan", || {
            node1(&lab, &["bridge", "fdb", "show", "dev", &vxlan]).contains("dst")
        }),
    ));
    assert!(pings(&lab), "after the VXLAN device came back");

    let fdb = node1(&lab, &["bridge", "fdb", "show", "dev", &vxlan]);
    let entry = fdb
        .lines()
        .find(|l| l.contains("dst") && !l.starts_with("00:00:00:00:00:00"))
        .unwrap_or_else(|| panic!("no remote container's FDB entry: {fdb}"))
        .to_string();
    let mac = entry
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let dst = entry
        .split_whitespace()
        .skip_while(|w| *w != "dst")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    damage(
        &lab,
        "delete an FDB entry",
        &["bridge", "fdb", "del", &mac, "dev", &vxlan, "dst", &dst],
    );
    took.push((
        "fdb",
        repaired("fdb entry", || {
            node1(&lab, &["bridge", "fdb", "show", "dev", &vxlan]).contains(&mac)
        }),
    ));

    damage(
        &lab,
        "delete the table",
        &["nft", "delete", "table", "inet", "shibafu"],
    );
    took.push((
        "nftables",
        repaired("nftables table", || {
            lab.exec("node1", &["nft", "list", "table", "inet", "shibafu"])
                .status
                .success()
        }),
    ));

    let ps = lab.cli_ok("node1", &["ps", "--format", "json"]);
    let list: Value = serde_json::from_str(&ps).expect("ps json");
    let netns = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "c1"))
        .and_then(|c| c["netns"].as_str())
        .expect("c1's namespace")
        .to_string();
    let net = format!("--net={netns}");
    damage(
        &lab,
        "delete c1's interface",
        &["nsenter", &net, "ip", "link", "del", "eth0"],
    );
    took.push((
        "veth",
        repaired("c1's veth", || {
            node1(
                &lab,
                &["nsenter", &net, "ip", "-o", "addr", "show", "dev", "eth0"],
            )
            .contains("172.27.0.")
        }),
    ));
    assert!(pings(&lab), "after c1's interface came back");
    eprintln!("repaired in: {took:?}");
    lab.down();
}
