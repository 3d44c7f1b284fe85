//! Lab tier: two coordinators, each on a host of its own, answer the cluster's DNS alike, name
//! each other as name servers, refuse names outside the cluster, and one stopped stops neither
//! the API (the CLI fails over to the other) nor resolution through the other. A coordinator
//! compacts etcd's history with no more than its role in the secure lab.

use std::time::Duration;

use shibafu_tests::{root_or_skip, wait_until, Lab};

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(10);

/// `dig +short` from node2 at a coordinator's DNS (`ip:port`): the answer lines, sorted.
fn dig(lab: &Lab, server: &str, name: &str, qtype: &str) -> Vec<String> {
    let (ip, port) = server.rsplit_once(':').expect("ip:port");
    let at = format!("@{ip}");
    let out = lab.exec(
        "node2",
        &[
            "dig", "+short", "+time=1", "+tries=2", &at, "-p", port, name, qtype,
        ],
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty() && !l.starts_with(";;"))
        .collect();
    lines.sort();
    lines
}

/// The rcode a coordinator gives `name` (`NOERROR`, `REFUSED`, ...).
fn rcode(lab: &Lab, server: &str, name: &str) -> String {
    let (ip, port) = server.rsplit_once(':').expect("ip:port");
    let at = format!("@{ip}");
    let out = lab.exec_ok(
        "node2",
        &["dig", "+time=1", "+tries=2", &at, "-p", port, name, "A"],
    );
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_string()
}

fn dns_of(lab: &Lab, coordinator: &str) -> String {
    let c = lab.component(coordinator);
    let dns = c["dns"].as_str().unwrap_or_else(|| panic!("no dns in {c}"));
    let addr = c["addr"].as_str().unwrap_or_default();
    assert!(
        dns.starts_with(&format!("{addr}:")),
        "{coordinator} answers DNS on its own address: {c}"
    );
    dns.to_string()
}

#[test]
fn two_coordinators_answer_alike_and_one_stopped_stops_neither_the_api_nor_dns() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up_with_coordinators(2, 2);
    let (dns1, dns2) = (dns_of(&lab, "coordinator1"), dns_of(&lab, "coordinator2"));
    let env = lab.exec_ok("node1", &["sh", "-c", "echo $SHIBAFU_COORDINATOR"]);
    assert_eq!(
        env.trim().split(',').count(),
        2,
        "the CLI gets both coordinators: {env}"
    );

    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    let run = lab.cli_ok(
        "node1",
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "frontend",
            "sleep",
            "600",
        ],
    );
    let ip = run.split_whitespace().nth(3).expect("address").to_string();
    let name = "web.frontend.local";
    for server in [&dns1, &dns2] {
        assert!(
            wait_until(SETTLE, POLL, || dig(&lab, server, name, "A")
                == [ip.clone()]),
            "{server} answers {name}: {:?}",
            dig(&lab, server, name, "A")
        );
    }
    assert_eq!(
        dig(&lab, &dns1, name, "A"),
        dig(&lab, &dns2, name, "A"),
        "the same answer"
    );
    let both = [
        "coordinator1.ns.frontend.local.",
        "coordinator2.ns.frontend.local.",
    ];
    for server in [&dns1, &dns2] {
        assert!(
            wait_until(SETTLE, POLL, || dig(&lab, server, "frontend.local", "NS")
                == both),
            "NS from {server}: {:?}",
            dig(&lab, server, "frontend.local", "NS")
        );
    }
    assert_eq!(
        rcode(&lab, &dns1, "www.example.com"),
        "REFUSED",
        "no open resolver"
    );
    assert_eq!(rcode(&lab, &dns2, "www.example.com"), "REFUSED");

    lab.lab_ok(&["stop", "coordinator1"]);
    let ls = lab.cli_ok("node2", &["network", "ls"]);
    assert!(ls.contains("frontend"), "the CLI failed over: {ls}");
    lab.cli_ok("node2", &["network", "create", "backend", "172.22.0.0/24"]);
    assert_eq!(
        dig(&lab, &dns2, name, "A"),
        [ip.as_str()],
        "coordinator2 still answers"
    );
    assert!(
        wait_until(SETTLE, POLL, || dig(&lab, &dns2, "frontend.local", "NS")
            == ["coordinator2.ns.frontend.local."]),
        "a stopped coordinator leaves NS: {:?}",
        dig(&lab, &dns2, "frontend.local", "NS")
    );
    assert!(
        wait_until(SETTLE, POLL, || dig(&lab, &dns2, "backend.local", "SOA")
            .len()
            == 1),
        "a network made while coordinator1 was down is served"
    );

    lab.lab_ok(&["start", "coordinator1"]);
    assert!(
        wait_until(SETTLE, POLL, || dig(&lab, &dns1, name, "A") == [ip.clone()]),
        "coordinator1 answers again"
    );
    assert!(
        wait_until(SETTLE, POLL, || dig(&lab, &dns1, "backend.local", "NS")
            == [
                "coordinator1.ns.backend.local.",
                "coordinator2.ns.backend.local."
            ]),
        "both name servers again: {:?}",
        dig(&lab, &dns1, "backend.local", "NS")
    );

    // `coordinator` alone names them all.
    lab.lab_ok(&["stop", "coordinator"]);
    for c in ["coordinator1", "coordinator2"] {
        assert_eq!(lab.component(c)["running"], false, "{c} stopped");
    }
    let out = lab.exec("node1", &["shibafu", "network", "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach any coordinator"),
        "{err}"
    );
    lab.lab_ok(&["start", "coordinator"]);
    assert!(lab.cli_ok("node1", &["network", "ls"]).contains("backend"));
}

/// Whether etcd's history before `revision` is gone (read as the lab's admin from `ctl`).
fn compacted_before(lab: &Lab, revision: &str) -> bool {
    let out = lab.exec(
        "ctl",
        &[
            "etcdctl",
            "get",
            "/shibafu/",
            "--prefix",
            "--keys-only",
            "--rev",
            revision,
        ],
    );
    String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted")
}

#[test]
fn a_coordinator_compacts_etcds_history_with_its_role_and_the_cluster_goes_on() {
    if !root_or_skip("lab") {
        return;
    }
    // The secure lab: etcd's RBAC on, the coordinators read-write on /shibafu/ only.
    let lab = Lab::up(1);
    assert_eq!(lab.status()["secure"], true, "a secure lab");
    lab.cli_ok("node1", &["network", "create", "before", "172.23.0.0/24"]);
    assert!(
        !compacted_before(&lab, "2"),
        "nothing compacted yet (300 s by default)"
    );
    lab.restart_with_env("coordinator1", &[("SHIBAFU_COMPACT_INTERVAL", "1")]);
    assert!(
        wait_until(SETTLE, POLL, || compacted_before(&lab, "2")),
        "the coordinator compacted etcd's history"
    );
    lab.cli_ok("node1", &["network", "create", "after", "172.24.0.0/24"]);
    let seen = |name: &str| {
        lab.agent_get("node1", "/v1/networks")
            .is_some_and(|v| v.to_string().contains(&format!("\"{name}\"")))
    };
    assert!(
        wait_until(SETTLE, POLL, || seen("after") && seen("before")),
        "node1's agent follows the cluster after the compaction: {:?}",
        lab.agent_get("node1", "/v1/networks")
    );
}
