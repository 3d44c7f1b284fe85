//! Lab tier, diagnosis of lost containers and nodes: on one 3-node lab, `diagnose`, `dns-trace`,
//! `routes` and `topology` meet a stopped container, a removed one (its name is missing), a
//! partitioned node and a node that is down, before and after its lease runs out; each command
//! says what a user reads to find the fault, and exits non-zero where the path or the look-up
//! is broken.

mod lab_diagnose_cluster;

use std::time::Duration;

use lab_diagnose_cluster::{cli, cli_on, cluster, diagnose, failed_step, start};
use shibafu_tests::{wait_until, Lab};

const POLL: Duration = Duration::from_millis(200);
const TCP_80: &[&str] = &["--port", "80"];
const AGENT_DOWN: &str = "(is shibafu-agent running on node2?)";
/// The agents' lease in the lab (`--lease-ttl` of compose-lab's components).
const LEASE_TTL: Duration = Duration::from_secs(5);

/// `network dns-trace --query NAME --from FROM` on node1.
fn dns_trace(lab: &Lab, name: &str, from: &str) -> (bool, String) {
    cli(
        lab,
        &["network", "dns-trace", "--query", name, "--from", from],
    )
}

/// `network routes --container NAME` on `node`.
fn routes(lab: &Lab, node: &str, name: &str) -> (bool, String) {
    cli_on(lab, node, &["network", "routes", "--container", name])
}

fn stopped_and_removed_containers_are_named(lab: &Lab) {
    lab.cli_ok("node2", &["stop", "web2"]);
    let (ok, out) = diagnose(lab, "web1", "web2", TCP_80);
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("containers") && line.contains("container web2 on node2 is stopped"),
        "{out}"
    );
    let (ok, out) = routes(lab, "node1", "web2");
    assert!(!ok, "{out}");
    assert!(out.starts_with("Container web2 on node2 (exited"), "{out}");
    assert!(
        out.contains("Cannot look inside: container is exited"),
        "{out}"
    );
    // Its name went with its endpoints, and it asks nothing any more.
    let (ok, out) = dns_trace(lab, "web2.frontend.local", "web1");
    assert!(!ok, "{out}");
    assert!(
        out.contains("Result:     NXDomain")
            && out.contains("NXDOMAIN: no such name in zone frontend.local."),
        "{out}"
    );
    let (ok, out) = dns_trace(lab, "web1.frontend.local", "web2");
    assert!(!ok, "{out}");
    assert!(
        out.contains("container web2 is on no network of the cluster (stopped?"),
        "{out}"
    );

    // Removed: no container has the name any more.
    lab.cli_ok("node2", &["rm", "web2"]);
    let (ok, out) = diagnose(lab, "web1", "web2", TCP_80);
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("containers")
            && line.contains("no container named web2 on any live node (node1, node2, node3)"),
        "{out}"
    );
    let (ok, out) = routes(lab, "node1", "web2");
    assert!(!ok, "{out}");
    assert!(
        out.contains("no container named web2 on any live node"),
        "{out}"
    );
    start(lab, "web2", "node2", "frontend");
}

/// Partitioned, node2 still runs web2 (its agent is read over its socket on this machine), but
/// nothing crosses the underlay: the path breaks at `underlay`, and on node2 the CLI cannot reach
/// the coordinator. Checked before node2's lease (5 s) can run out.
fn a_partitioned_node_is_named(lab: &Lab) {
    lab.lab_ok(&["partition", "node2"]);
    let (inside_ok, inside) = routes(lab, "node1", "web2");
    let (ok, out) = diagnose(lab, "web1", "web2", &["--protocol", "icmp"]);
    let (cut_ok, cut) = routes(lab, "node2", "web2");
    lab.lab_ok(&["heal", "node2"]);
    assert!(inside_ok, "{inside}");
    assert!(
        inside.starts_with("Container web2 on node2 (running")
            && inside
                .lines()
                .any(|l| l.starts_with("eth0") && l.contains(" up ")),
        "{inside}"
    );
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("underlay")
            && line.contains("node1 cannot reach node2's underlay address")
            && line.contains("the nodes are partitioned"),
        "{out}"
    );
    assert!(!cut_ok, "{cut}");
    assert!(cut.contains("cannot reach coordinator at"), "{cut}");
    assert!(
        path_back(lab),
        "the path did not come back after heal: {}",
        diagnose(lab, "web1", "web2", TCP_80).1
    );
    // node2 was cut off from etcd too: when the cut outlasted its lease, the old lease ends
    // now and then, and node2 publishes its endpoints again under a new one. Past a whole lease
    // the cluster is settled, so the next step starts from a node2 that holds its records.
    std::thread::sleep(LEASE_TTL + Duration::from_secs(1));
    assert!(
        path_back(lab),
        "the path did not stay back after heal: {}",
        diagnose(lab, "web1", "web2", TCP_80).1
    );
}

/// Does web1 -> web2 diagnose clean again within 30 s?
fn path_back(lab: &Lab) -> bool {
    wait_until(Duration::from_secs(30), POLL, || {
        diagnose(lab, "web1", "web2", TCP_80).0
    })
}

/// node2's agent stops: at once every command that needs it says so; once its lease is gone,
/// its container and its name are gone from the cluster, and `topology` no longer shows it.
fn a_node_that_is_down_is_named(lab: &Lab) {
    lab.lab_ok(&["stop", "node2"]);
    // All three at once, well within the lease node2 leaves behind (it ends 3.5-5 s after the
    // stop).
    let (diagnosed, traced, routed) = std::thread::scope(|s| {
        let diagnosed = s.spawn(|| diagnose(lab, "web1", "web2", TCP_80));
        let traced = s.spawn(|| dns_trace(lab, "web1.frontend.local", "web2"));
        let routed = s.spawn(|| routes(lab, "node1", "web2"));
        let joined = |h: std::thread::ScopedJoinHandle<'_, (bool, String)>| {
            h.join().expect("the command's thread")
        };
        (joined(diagnosed), joined(traced), joined(routed))
    });
    let (ok, out) = diagnosed;
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("containers") && line.contains("node node2 (of web2) is down"),
        "{out}"
    );
    for (what, (ok, out)) in [("dns-trace", traced), ("routes", routed)] {
        assert!(!ok, "{what}: {out}");
        assert!(
            out.contains("cannot reach agent at") && out.contains(AGENT_DOWN),
            "{what}: {out}"
        );
    }

    assert!(
        wait_until(Duration::from_secs(15), POLL, || {
            let (_, out) = diagnose(lab, "web1", "web2", TCP_80);
            failed_step(&out).is_some_and(|l| {
                l.contains("no container named web2 on any live node (node1, node3)")
            })
        }),
        "after the lease: {}",
        diagnose(lab, "web1", "web2", TCP_80).1
    );
    let (ok, out) = dns_trace(lab, "web2.frontend.local", "web1");
    assert!(!ok, "{out}");
    assert!(
        out.contains("NXDOMAIN: no such name in zone frontend.local."),
        "{out}"
    );
    let (ok, out) = routes(lab, "node1", "web2");
    assert!(!ok, "{out}");
    assert!(
        out.contains("no container named web2 on any live node"),
        "{out}"
    );
    let topo = lab.cli_ok("node1", &["network", "topology"]);
    let nodes: Vec<&str> = topo
        .lines()
        .skip_while(|l| *l != "Nodes:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(nodes, ["node1", "node3"], "{topo}");
    assert!(
        topo.contains("    web1   172.21.0.2   node1") && !topo.contains("web2"),
        "{topo}"
    );
}

#[test]
fn diagnosis_names_lost_containers_a_partition_and_a_node_down() {
    let Some(lab) = cluster() else { return };
    assert!(diagnose(&lab, "web1", "web2", TCP_80).0, "a healthy start");
    stopped_and_removed_containers_are_named(&lab);
    a_partitioned_node_is_named(&lab);
    a_node_that_is_down_is_named(&lab);
    lab.down();
}
