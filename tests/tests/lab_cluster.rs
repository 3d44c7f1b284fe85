//! Lab tier: a real cluster (etcd, coordinator, agents in namespaces) built by `shibafu-lab`,
//! driven through the `shibafu` CLI and the agents' local API, with faults on demand.

use std::process::Command;
use std::time::Duration;

use shibafu_tests::{
    exec_fails, exec_ok, exec_out, namespace_names, root_or_skip, unique_name, wait_until, Lab,
};

/// The lab's lease TTL is 5 s: a node must be gone within that plus the keepalive slack.
const LEASE_GONE: Duration = Duration::from_secs(12);
const POLL: Duration = Duration::from_millis(200);

/// Node names listed by `shibafu node ls` run on `on`.
fn node_ls(lab: &Lab, on: &str) -> Vec<String> {
    let out = lab.cli_ok(on, &["node", "ls"]);
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Network names the agent of `node` reports on `GET /v1/networks` (empty if it does not answer).
fn agent_networks(lab: &Lab, node: &str) -> Vec<String> {
    let Some(v) = lab.agent_get(node, "/v1/networks") else {
        return Vec::new();
    };
    let mut names: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One field of a component in `shibafu-lab status --json`, as text.
fn component_field(lab: &Lab, name: &str, field: &str) -> String {
    let status = lab.status();
    let c = status["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no component {name} in {status}"));
    match &c[field] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn component_running(lab: &Lab, name: &str) -> bool {
    component_field(lab, name, "running") == "true"
}

#[test]
fn networks_created_on_one_node_reach_every_agent() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(3);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.cli_ok("node2", &["network", "create", "backend", "172.22.0.0/24"]);
    for node in lab.node_names() {
        assert!(
            wait_until(Duration::from_secs(10), POLL, || agent_networks(
                &lab, &node
            ) == [
                "backend", "frontend"
            ]),
            "agent of {node} sees {:?}",
            agent_networks(&lab, &node)
        );
    }
    assert_eq!(node_ls(&lab, "node3"), ["node1", "node2", "node3"]);
    let ls = lab.cli_ok("node3", &["network", "ls"]);
    assert!(
        ls.contains("frontend") && ls.contains("172.22.0.0/24"),
        "{ls}"
    );
    let status = lab.agent_get("node2", "/v1/status").expect("agent status");
    assert_eq!(status["node"], "node2");
    assert_eq!(status["etcd_connected"], true);
    assert_eq!(
        status["nodes"],
        serde_json::json!(["node1", "node2", "node3"])
    );
}

#[test]
fn a_stopped_agent_leaves_the_cluster_after_its_lease_and_rejoins_on_start() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(3);
    lab.lab_ok(&["stop", "node3"]);
    assert!(!component_running(&lab, "node3"));
    assert!(
        wait_until(LEASE_GONE, POLL, || !node_ls(&lab, "node1")
            .contains(&"node3".into())),
        "node3 still listed: {:?}",
        node_ls(&lab, "node1")
    );
    // Only the agent stopped: the node's namespace and link are still there.
    assert!(namespace_names(&format!("sf-{}-node3", lab.name())).len() == 1);
    lab.exec_ok("node3", &["ip", "link", "show", "eth0"]);

    lab.lab_ok(&["start", "node3"]);
    assert!(component_running(&lab, "node3"));
    assert!(
        wait_until(Duration::from_secs(10), POLL, || node_ls(&lab, "node1")
            .len()
            == 3),
        "node3 did not come back: {:?}",
        node_ls(&lab, "node1")
    );
}

#[test]
fn a_partitioned_node_drops_out_and_its_agent_rejoins_after_heal() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    let pid_before = component_field(&lab, "node2", "pid");
    lab.lab_ok(&["partition", "node2"]);
    let ctl = component_field(&lab, "etcd", "addr");
    let out = lab.exec("node2", &["ping", "-c1", "-W1", &ctl]);
    assert!(
        !out.status.success(),
        "node2 still reaches the control host while partitioned"
    );
    assert!(
        wait_until(LEASE_GONE, POLL, || node_ls(&lab, "node1") == ["node1"]),
        "node2 still listed: {:?}",
        node_ls(&lab, "node1")
    );
    lab.lab_ok(&["heal", "node2"]);
    assert!(
        wait_until(Duration::from_secs(15), POLL, || node_ls(&lab, "node1")
            .len()
            == 2),
        "node2 did not rejoin: {:?}",
        node_ls(&lab, "node1")
    );
    let pid_after = component_field(&lab, "node2", "pid");
    assert_eq!(
        pid_before, pid_after,
        "the agent rejoined by itself, without a restart"
    );
}

#[test]
fn agents_keep_their_view_without_etcd_and_catch_up_when_it_returns() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "before", "172.21.0.0/24"]);
    assert!(wait_until(Duration::from_secs(10), POLL, || {
        lab.node_names()
            .iter()
            .all(|n| agent_networks(&lab, n) == ["before"])
    }));
    lab.lab_ok(&["stop", "etcd"]);
    assert!(
        wait_until(Duration::from_secs(10), POLL, || {
            lab.agent_get("node2", "/v1/status")
                .is_some_and(|s| s["etcd_connected"] == false)
        }),
        "agent did not notice etcd going away"
    );
    assert_eq!(agent_networks(&lab, "node2"), ["before"], "last state kept");

    lab.lab_ok(&["start", "etcd"]);
    lab.cli_ok("node1", &["network", "create", "after", "172.22.0.0/24"]);
    for node in lab.node_names() {
        assert!(
            wait_until(Duration::from_secs(15), POLL, || agent_networks(
                &lab, &node
            ) == ["after", "before"]),
            "agent of {node} did not catch up: {:?}",
            agent_networks(&lab, &node)
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), POLL, || lab
            .agent_get("node1", "/v1/status")
            .is_some_and(|s| s["etcd_connected"] == true)),
        "agent did not report etcd back"
    );
}

#[test]
fn two_labs_run_side_by_side_without_seeing_each_other() {
    if !root_or_skip("lab") {
        return;
    }
    let a = Lab::up(1);
    let b = Lab::up(1);
    assert_ne!(a.status()["subnet"], b.status()["subnet"]);
    a.cli_ok(
        "node1",
        &["network", "create", "only-in-a", "172.21.0.0/24"],
    );
    assert!(wait_until(
        Duration::from_secs(10),
        POLL,
        || agent_networks(&a, "node1") == ["only-in-a"]
    ));
    assert!(agent_networks(&b, "node1").is_empty());
    let b_nets = b.cli_ok("node1", &["network", "ls", "--format", "json"]);
    assert!(!b_nets.contains("only-in-a"), "{b_nets}");
}

#[test]
fn exec_runs_inside_a_node_with_the_cli_pointed_at_it_and_passes_the_exit_code() {
    if !root_or_skip("lab") {
        return;
    }
    let root_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
    let lab = Lab::up(2);
    let addr = component_field(&lab, "node2", "addr");
    let ip = lab.exec_ok("node2", &["ip", "-4", "-br", "addr", "show", "eth0"]);
    assert!(ip.contains(&format!("{addr}/24")), "{ip}");
    let env = lab.exec_ok(
        "node2",
        &["sh", "-c", "echo $SHIBAFU_AGENT $SHIBAFU_COORDINATOR"],
    );
    assert!(
        env.contains("nodes/node2/agent.sock") && env.contains(":7480"),
        "{env}"
    );
    let fwd = lab.exec_ok("node2", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(fwd.trim(), "1", "forwarding is on inside the node");
    let status = lab.cli_ok("node2", &["status"]);
    assert!(
        status.contains("agent") && status.contains("ok"),
        "{status}"
    );
    assert_eq!(
        lab.exec("node1", &["sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read"),
        root_forwarding,
        "the machine's own namespace is untouched"
    );
}

#[test]
fn a_second_up_is_refused_and_the_running_lab_is_untouched() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(1);
    let err = exec_fails(&mut lab.lab_cmd(&["up", "--nodes", "1"]));
    assert!(err.contains("already up"), "{err}");
    assert!(component_running(&lab, "node1") && component_running(&lab, "etcd"));
    assert_eq!(node_ls(&lab, "node1"), ["node1"]);
}

#[test]
fn down_removes_every_namespace_process_and_file_and_can_run_twice() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    let name = lab.name().to_string();
    let dir = lab.state_dir().to_path_buf();
    // A process the lab did not start itself, living in a node.
    let mut stray = lab
        .exec_cmd("node2", &["sleep", "300"])
        .spawn()
        .expect("spawn sleep");
    assert!(wait_until(Duration::from_secs(5), POLL, || {
        exec_out(Command::new("pgrep").args(["-f", "sleep 300"]))
            .status
            .success()
    }));
    let down = lab.lab_cmd(&["down"]);
    lab.down();
    assert!(namespace_names(&format!("sf-{name}-")).is_empty());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !dir.with_extension("lock").exists(),
        "lock file left behind"
    );
    let pattern = dir.display().to_string();
    let left = exec_out(Command::new("pgrep").args(["-fa", &pattern]));
    assert!(
        !left.status.success(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let status = stray.wait().expect("wait");
    assert!(!status.success(), "the stray process was killed");
    let mut again = down;
    exec_ok(&mut again);
}

#[test]
fn a_failed_up_removes_what_it_made() {
    if !root_or_skip("lab") {
        return;
    }
    let name = unique_name("t");
    // A private state root: after the failed up it must be gone entirely.
    let root = std::env::temp_dir().join(format!("sf-labroot-{name}"));
    let mut up = Command::new(shibafu_tests::bin("shibafu-lab"));
    up.env("SHIBAFU_BIN_DIR", shibafu_tests::bin_dir())
        .env("SHIBAFU_LAB_ROOT", &root)
        .env("SHIBAFU_ETCD", "/bin/false")
        .args(["--name", &name, "up", "--nodes", "2"]);
    let err = exec_fails(&mut up);
    assert!(err.contains("etcd") && err.contains("removed"), "{err}");
    assert!(namespace_names(&format!("sf-{name}-")).is_empty());
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn a_spec_names_nodes_creates_networks_and_serves_upstream_records() {
    if !root_or_skip("lab") {
        return;
    }
    let spec = std::env::temp_dir().join(format!("{}.yaml", unique_name("spec")));
    std::fs::write(
        &spec,
        "nodes: [alpha, beta]\n\
         networks:\n  - name: web\n    subnet: 172.24.0.0/24\n\
         upstream_dns:\n  zones: [corp.test]\n  records: ['db.corp.test. 60 A 192.0.2.55']\n",
    )
    .expect("write spec");
    let lab = Lab::up_with_spec(2, &spec);
    std::fs::remove_file(&spec).expect("remove spec");
    assert_eq!(node_ls(&lab, "beta"), ["alpha", "beta"]);
    assert!(wait_until(
        Duration::from_secs(10),
        POLL,
        || agent_networks(&lab, "beta") == ["web"]
    ));
    let dns = lab.status()["dns_addr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let server = format!("@{}", dns.split(':').next().unwrap_or_default());
    let answer = lab.exec_ok(
        "alpha",
        &["dig", "+short", "+time=2", &server, "db.corp.test", "A"],
    );
    assert_eq!(answer.trim(), "192.0.2.55");
}
