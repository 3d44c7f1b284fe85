//! Lab tier, containers on a host as a user drives them: foreground runs pass the exit code,
//! bad input leaves nothing, fixed addresses, attaching a namespace made elsewhere, internal
//! networks without a way out, exited containers leaving DNS (also when they exit while their
//! agent is down), and no leftovers after removal.

use std::time::Duration;

use shibafu_tests::{root_or_skip, text, unique_name, wait_until, Lab};

const POLL: Duration = Duration::from_millis(100);

fn lab() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "backend", "172.22.0.0/24"]);
    lab.cli_ok(
        "node1",
        &["network", "create", "vault", "172.23.0.0/24", "--internal"],
    );
    Some(lab)
}

fn ctl_addr(lab: &Lab) -> String {
    let st = lab.status();
    st["components"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "etcd"))
        .and_then(|c| c["addr"].as_str())
        .map(str::to_string)
        .expect("ctl address")
}

/// Keys under a prefix in the lab's etcd (`shibafu-lab exec` points etcdctl at it).
fn etcd_keys(lab: &Lab, prefix: &str) -> Vec<String> {
    let out = lab.exec_ok(
        "node1",
        &["etcdctl", "get", "--prefix", "--keys-only", prefix],
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn foreground_run_streams_output_and_passes_the_exit_code() {
    let Some(lab) = lab() else { return };
    let out = lab.cli(
        "node1",
        &[
            "run",
            "--name",
            "once",
            "--network",
            "backend",
            "--",
            "sh",
            "-c",
            "echo hi from $(hostname); exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hi from once"),
        "{}",
        text(&out.stdout)
    );
    let ps = lab.cli_ok("node1", &["ps", "-a"]);
    assert!(ps.contains("once") && ps.contains("exited (3)"), "{ps}");
    lab.cli_ok("node1", &["rm", "once"]);
    assert!(!lab.cli_ok("node1", &["ps", "-a"]).contains("once"));
    lab.down();
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let Some(lab) = lab() else { return };
    lab.cli_ok(
        "node1",
        &[
            "run",
            "-d",
            "--name",
            "db",
            "--network",
            "backend",
            "--ip",
            "172.22.0.10",
            "--",
            "sleep",
            "600",
        ],
    );
    let info = lab.agent_get("node1", "/v1/containers/db").expect("db");
    assert_eq!(info["interfaces"][0]["ipv4"], "172.22.0.10");
    for (args, needle) in [
        (
            vec![
                "run",
                "-d",
                "--name",
                "db",
                "--network",
                "backend",
                "--",
                "true",
            ],
            "already",
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "x1",
                "--network",
                "nope",
                "--",
                "true",
            ],
            "nope",
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "x2",
                "--network",
                "backend",
                "--ip",
                "172.22.0.10",
                "--",
                "true",
            ],
            "172.22.0.10",
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "x3",
                "--network",
                "backend",
                "--ip",
                "10.9.9.9",
                "--",
                "true",
            ],
            "10.9.9.9",
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "Bad_Name",
                "--network",
                "backend",
                "--",
                "true",
            ],
            "Bad_Name",
        ),
    ] {
        let out = lab.cli("node1", &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let ps = lab.cli_ok("node1", &["ps", "-a"]);
    assert_eq!(ps.lines().count(), 2, "half-made containers left:\n{ps}");
    let netns = lab.state_dir().join("nodes/node1/netns");
    let files: Vec<_> = std::fs::read_dir(&netns)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(files, vec![std::ffi::OsString::from("db")]);
    assert_eq!(etcd_keys(&lab, "/shibafu/v1/endpoints/").len(), 1);
    lab.down();
}

#[test]
fn a_namespace_made_elsewhere_attaches_and_detaches() {
    let Some(lab) = lab() else { return };
    let ns = unique_name("sfatt");
    lab.exec_ok("node1", &["ip", "netns", "add", &ns]);
    let path = format!("/run/netns/{ns}");
    let out = lab.cli_ok(
        "node1",
        &[
            "network", "attach", "backend", "--netns", &path, "--name", "legacy",
        ],
    );
    assert!(out.contains("172.22.0."), "{out}");
    lab.cli_ok(
        "node2",
        &[
            "run",
            "-d",
            "--name",
            "probe",
            "--network",
            "backend",
            "--",
            "sleep",
            "600",
        ],
    );
    let reach = || {
        lab.exec(
            "node2",
            &[
                "shibafu",
                "exec",
                "probe",
                "ping",
                "-c1",
                "-W1",
                "legacy.backend.local",
            ],
        )
        .status
        .success()
    };
    assert!(
        wait_until(Duration::from_secs(5), POLL, reach),
        "legacy not reachable by name from node2"
    );
    lab.cli_ok(
        "node1",
        &["network", "detach", "backend", "--name", "legacy"],
    );
    assert!(
        wait_until(Duration::from_secs(5), POLL, || !reach()),
        "legacy still answers after detach"
    );
    let links = lab.exec_ok("node1", &["ip", "netns", "exec", &ns, "ip", "-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "veth left in the namespace:\n{links}"
    );
    lab.exec_ok("node1", &["ip", "netns", "del", &ns]);
    lab.down();
}

#[test]
fn internal_networks_have_no_way_out() {
    let Some(lab) = lab() else { return };
    let outside = ctl_addr(&lab);
    lab.cli_ok(
        "node1",
        &[
            "run",
            "-d",
            "--name",
            "open",
            "--network",
            "backend",
            "--",
            "sleep",
            "600",
        ],
    );
    lab.cli_ok(
        "node1",
        &[
            "run",
            "-d",
            "--name",
            "sealed",
            "--network",
            "vault",
            "--",
            "sleep",
            "600",
        ],
    );
    let ping = |name: &str| {
        lab.exec(
            "node1",
            &["shibafu", "exec", name, "ping", "-c1", "-W1", &outside],
        )
        .status
        .success()
    };
    assert!(
        ping("open"),
        "a normal network cannot reach outside the cluster"
    );
    assert!(
        !ping("sealed"),
        "an internal network reached outside the cluster"
    );
    // Its DNS still answers cluster names.
    let out = lab.exec_ok(
        "node1",
        &[
            "shibafu",
            "exec",
            "sealed",
            "dig",
            "+short",
            "sealed.vault.local",
        ],
    );
    assert!(out.contains("172.23.0."), "{out}");
    lab.down();
}

#[test]
fn exited_containers_leave_dns_and_rm_leaves_nothing() {
    let Some(lab) = lab() else { return };
    lab.cli_ok(
        "node1",
        &[
            "run",
            "-d",
            "--name",
            "brief",
            "--network",
            "backend",
            "--",
            "sleep",
            "2",
        ],
    );
    lab.cli_ok(
        "node2",
        &[
            "run",
            "-d",
            "--name",
            "watcher",
            "--network",
            "backend",
            "--",
            "sleep",
            "600",
        ],
    );
    let resolves = || {
        !lab.exec_ok(
            "node2",
            &[
                "shibafu",
                "exec",
                "watcher",
                "dig",
                "+short",
                "brief.backend.local",
            ],
        )
        .trim()
        .is_empty()
    };
    assert!(
        wait_until(Duration::from_secs(3), POLL, resolves),
        "brief never resolved"
    );
    assert!(
        wait_until(Duration::from_secs(10), POLL, || !resolves()),
        "brief still resolves after it exited"
    );
    assert!(lab.cli_ok("node1", &["ps", "-a"]).contains("exited (0)"));
    lab.cli_ok("node1", &["rm", "brief"]);
    lab.cli_ok("node2", &["rm", "-f", "watcher"]);
    lab.cli_ok("node1", &["network", "rm", "backend"]);
    lab.cli_ok("node1", &["network", "rm", "vault"]);
    assert!(etcd_keys(&lab, "/shibafu/v1/endpoints/").is_empty());
    assert!(
        etcd_keys(&lab, "/shibafu/v1/ipam/").is_empty(),
        "IPAM blocks leaked"
    );
    for node in ["node1", "node2"] {
        assert!(
            wait_until(Duration::from_secs(5), POLL, || !lab
                .exec_ok(node, &["ip", "-o", "link"])
                .contains(": sf")),
            "{node} kept shibafu links"
        );
        // The firewall is re-rendered right after the links go.
        let clean = || {
            !lab.exec_ok(node, &["nft", "list", "ruleset"])
                .contains("sfbr")
        };
        assert!(
            wait_until(Duration::from_secs(5), POLL, clean),
            "{node} kept rules for removed networks:\n{}",
            lab.exec_ok(node, &["nft", "list", "ruleset"])
        );
    }
    lab.down();
}

#[test]
fn a_container_that_exits_while_its_agent_is_down_is_detached_after_the_restart() {
    let Some(lab) = lab() else { return };
    for (name, secs) in [("brief", "3"), ("stay", "600")] {
        lab.cli_ok(
            "node1",
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "backend",
                "--",
                "sleep",
                secs,
            ],
        );
    }
    lab.cli_ok(
        "node2",
        &[
            "run",
            "-d",
            "--name",
            "watcher",
            "--network",
            "backend",
            "--",
            "sleep",
            "600",
        ],
    );
    lab.lab_ok(&["stop", "node1"]);
    std::thread::sleep(Duration::from_secs(4));
    lab.lab_ok(&["start", "node1"]);
    let brief_gone = || {
        lab.agent_get("node1", "/v1/containers/brief")
            .is_some_and(|c| c["state"] == "exited" && c["interfaces"] == serde_json::json!([]))
            && !etcd_keys(&lab, "/shibafu/v1/endpoints/")
                .iter()
                .any(|k| k.ends_with("/brief"))
    };
    assert!(
        wait_until(Duration::from_secs(20), POLL, brief_gone),
        "brief still attached after the restart: {:?}",
        lab.agent_get("node1", "/v1/containers/brief")
    );
    let netns = lab.state_dir().join("nodes/node1/netns");
    assert!(
        !netns.join("brief").exists(),
        "brief's namespace still pinned"
    );
    // The rest of the node was left alone: stay runs, answers by name, and shows its exit later.
    let stay = lab.agent_get("node1", "/v1/containers/stay").expect("stay");
    assert_eq!(stay["state"], "running");
    assert!(
        wait_until(Duration::from_secs(10), POLL, || lab
            .exec(
                "node2",
                &[
                    "shibafu",
                    "exec",
                    "watcher",
                    "ping",
                    "-c1",
                    "-W1",
                    "stay.backend.local"
                ]
            )
            .status
            .success()),
        "stay unreachable after its agent restarted"
    );
    lab.cli_ok("node1", &["stop", "-t", "1", "stay"]);
    let stay = lab.agent_get("node1", "/v1/containers/stay").expect("stay");
    assert_eq!(
        (&stay["state"], &stay["exit_code"]),
        (&serde_json::json!("exited"), &serde_json::json!(143))
    );
    assert_eq!(
        stay["interfaces"],
        serde_json::json!([]),
        "stop answered before the detach"
    );
    lab.down();
}
