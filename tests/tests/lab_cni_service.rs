//! Lab tier: what a CNI attachment joins and what CHECK guards beyond the interface. Pods
//! attached with `SHIBAFU_SERVICE`/`SHIBAFU_PORT`/`SHIBAFU_WEIGHT` in `CNI_ARGS` are instances
//! of the service (created with the defaults), with their weights, and its name answers their
//! addresses in turn; CHECK reports the network's nftables table gone from the node (unless the
//! agent restored it first) and passes again once it is back.

use std::time::Duration;

use serde_json::Value;
use shibafu_tests::cni::Runtime;
use shibafu_tests::cni_conf::node_netns;
use shibafu_tests::cni_lab::{container, result_gateway, result_ip, AfterDamage};
use shibafu_tests::{is_root, wait_until, Lab};

const NET: &str = "cnisvc";
const SETTLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);

/// `shibafu service inspect web --format json` on node1, when it answers.
fn service(lab: &Lab) -> Option<Value> {
    let out = lab.cli(
        "node1",
        &[
            "service",
            "inspect",
            "web",
            "--network",
            NET,
            "--format",
            "json",
        ],
    );
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn cni_args_join_a_service_and_check_guards_the_firewall() {
    if !is_root() {
        eprintln!("skipping lab-tier CNI test: needs root");
        return;
    }
    let lab = Lab::up(1);
    lab.cli_ok("node1", &["network", "create", NET, "172.25.0.0/24"]);
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let (ns_a, a) = container("cnisa");
    let a = a
        .arg("SHIBAFU_NAME", "web-a")
        .arg("SHIBAFU_SERVICE", "web")
        .arg("SHIBAFU_PORT", "8080")
        .arg("SHIBAFU_WEIGHT", "3");
    let (_ns_b, b) = container("cnisb");
    let b = b.arg("SHIBAFU_NAME", "web-b").arg("SHIBAFU_SERVICE", "web");
    let ra = rt.add(&a).expect_ok("ADD web-a").clone();
    let rb = rt.add(&b).expect_ok("ADD web-b").clone();
    let (ip_a, ip_b, gw) = (result_ip(&ra, 0), result_ip(&rb, 0), result_gateway(&ra));

    let mut seen = None;
    let joined = wait_until(SETTLE, POLL, || {
        seen = service(&lab);
        seen.as_ref()
            .and_then(|s| s["instances"].as_array())
            .is_some_and(|i| i.len() == 2)
    });
    let svc = seen.unwrap_or_default();
    assert!(joined, "both pods are instances of web: {svc}");
    assert_eq!(
        svc["port"], 8080,
        "created with the first instance's port: {svc}"
    );
    let weight = |name: &str| {
        svc["instances"]
            .as_array()
            .and_then(|i| i.iter().find(|x| x["name"] == name))
            .map(|x| (x["weight"].clone(), x["ipv4"].clone()))
    };
    assert_eq!(
        weight("web-a"),
        Some((3.into(), ip_a.clone().into())),
        "{svc}"
    );
    assert_eq!(
        weight("web-b"),
        Some((1.into(), ip_b.clone().into())),
        "{svc}"
    );

    let zone = format!("web.{NET}.local");
    // One instance per answer, rotating: both come up over a few queries.
    let mut answers = String::new();
    let answered = wait_until(SETTLE, POLL, || {
        let out = ns_a
            .cmd("dig")
            .args([&format!("@{gw}"), "+short", "+tries=1", "+time=2", &zone])
            .output()
            .expect("dig");
        answers.push_str(&String::from_utf8_lossy(&out.stdout));
        answers.contains(&ip_a) && answers.contains(&ip_b)
    });
    assert!(answered, "{zone} answers both instances: {answers:?}");

    // The node's shibafu table removed by hand: CHECK says so, unless the agent's own repair
    // (on the nftables event) restored it first (see `AfterDamage`).
    let node = node_netns(&lab, "node1");
    let before = table_handle(&node);
    let nft = std::process::Command::new("ip")
        .args([
            "netns", "exec", &node, "nft", "delete", "table", "inet", "shibafu",
        ])
        .status()
        .expect("nft");
    assert!(nft.success(), "deleting the table in {node}");
    let check = rt.check(&a);
    let after = table_handle(&node);
    let damage = AfterDamage {
        repaired: after.is_some() && after != before,
        state: format!("table handle before {before:?}, after CHECK {after:?}"),
        check,
    };
    damage.expect_seen_or_repaired("CHECK without the firewall table", "nftables");
    let restored = wait_until(SETTLE, POLL, || rt.check(&a).ok());
    assert!(restored, "CHECK passes once the table is back");

    rt.del(&a).expect_ok("DEL web-a");
    rt.del(&b).expect_ok("DEL web-b");
    let mut left = None;
    let gone = wait_until(SETTLE, POLL, || {
        left = service(&lab);
        left.as_ref()
            .and_then(|s| s["instances"].as_array())
            .is_some_and(|i| i.is_empty())
    });
    assert!(gone, "no instance left after DEL: {left:?}");
    lab.down();
}

/// The handle of the `inet shibafu` table in the namespace `node` (a restored table gets a new
/// one), `None` when there is no such table.
fn table_handle(node: &str) -> Option<u64> {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", node, "nft", "-a", "list", "table", "inet", "shibafu",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    first.split("# handle ").nth(1)?.trim().parse().ok()
}
