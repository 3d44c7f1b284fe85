//! Lab tier: a 3-member etcd cluster loses its leader under continuous container churn. Every
//! container start and removal that was acknowledged is in the cluster afterwards (no change
//! lost, none resurrected), no address is handed out twice, and DNS answers a running
//! container's name on another node throughout.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shibafu_tests::{is_root, text, wait_until, Lab};

/// How long the churn runs before and after the leader is stopped.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(8);

/// The member name of etcd's current leader (`etcdctl endpoint status` in the control host).
fn leader(lab: &Lab) -> String {
    let out = lab.exec("ctl", &["etcdctl", "endpoint", "status", "-w", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("etcdctl: {e}: {}", text(&out.stderr)));
    let all = v.as_array().cloned().unwrap_or_default();
    let lead = all
        .iter()
        .find(|s| s["Status"]["leader"] == s["Status"]["header"]["member_id"])
        .unwrap_or_else(|| panic!("no leader in {v}"));
    let port: u16 = lead["Endpoint"]
        .as_str()
        .and_then(|e| e.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("endpoint port");
    format!("etcd{}", (port - 2379) / 10 + 1)
}

#[test]
fn losing_the_etcd_leader_under_churn_loses_nothing() {
    if !is_root() {
        eprintln!("skipping lab-tier etcd HA test: needs root");
        return;
    }
    let lab = Lab::up_with_etcd_members(2, 3);
    lab.cli_ok("node1", &["network", "create", "front", "172.28.0.0/24"]);
    lab.run_idle("node1", "anchor", "front");
    lab.run_idle("node2", "asker", "front");
    let resolves = || {
        let out = lab.cli(
            "node2",
            &[
                "exec",
                "asker",
                "dig",
                "+short",
                "+tries=1",
                "+time=1",
                "anchor.front.local",
            ],
        );
        text(&out.stdout).trim().starts_with("172.28.0.")
    };
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        resolves
    ));

    let stop = AtomicBool::new(false);
    let (alive, dns_misses, stopped) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut alive: BTreeSet<String> = BTreeSet::new();
            let mut i = 0;
            // Bounded in count as well as in time.
            while !stop.load(Ordering::Relaxed) && i < 300 {
                let (node, name) = (if i % 2 == 0 { "node1" } else { "node2" }, format!("ch{i}"));
                let run = [
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--network",
                    "front",
                    "--",
                    "sleep",
                    "600",
                ];
                if lab.cli(node, &run).status.success() {
                    alive.insert(format!("{node}/{name}"));
                }
                if i % 3 == 2 {
                    if let Some(old) = alive.iter().next().cloned() {
                        let (n, c) = old.split_once('/').expect("node/name");
                        if lab.cli(n, &["rm", "-f", c]).status.success() {
                            alive.remove(&old);
                        }
                    }
                }
                i += 1;
            }
            alive
        });
        let dns = s.spawn(|| {
            let mut misses = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if !resolves() {
                    misses.push(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            misses
        });
        std::thread::sleep(BEFORE);
        let member = leader(&lab);
        lab.lab_ok(&["stop", &member]);
        std::thread::sleep(AFTER);
        stop.store(true, Ordering::Relaxed);
        (
            churn.join().expect("churn"),
            dns.join().expect("dns"),
            member,
        )
    });
    lab.lab_ok(&["start", &stopped]);
    eprintln!(
        "stopped {stopped}; {} churned containers alive at the end",
        alive.len()
    );

    assert!(dns_misses.is_empty(), "DNS missed anchor at {dns_misses:?}");
    let want: BTreeSet<String> = alive
        .iter()
        .filter_map(|a| a.split_once('/').map(|(_, c)| c.to_string()))
        .chain(["anchor".to_string(), "asker".to_string()])
        .collect();
    assert!(want.len() > 4, "the churn got little done: {want:?}");
    let mut eps = Vec::new();
    let settled = wait_until(Duration::from_secs(10), Duration::from_millis(300), || {
        eps = lab.endpoint_addresses("front").into_iter().collect();
        eps.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>() == want
    });
    assert!(
        settled,
        "acknowledged changes: {want:?}\nin the cluster: {eps:?}"
    );
    let addrs: BTreeSet<&String> = eps.iter().map(|(_, a)| a).collect();
    assert_eq!(
        addrs.len(),
        eps.len(),
        "an address handed out twice: {eps:?}"
    );
    lab.down();
}
