//! Lab tier, multi-host overlay: containers on different nodes reach each other by name over
//! VXLAN, isolation holds across nodes, the overlay MTU carries full-size packets, unicast never
//! floods, node loss and etcd loss behave, and an agent restart does not disturb containers.
//! Everything is driven with the real CLI and checked with ping, dig, nslookup and bridge.

use std::time::Duration;

use shibafu_tests::{root_or_skip, wait_until, Lab};

const POLL: Duration = Duration::from_millis(100);
/// Lease TTL of the lab (5 s) plus keepalive slack.
const LEASE_GONE: Duration = Duration::from_secs(12);

/// A 3-node lab with frontend/backend networks and postgres (node1, backend), api (node3,
/// backend + frontend) and client (node2, frontend).
fn cluster() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(3);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.cli_ok("node1", &["network", "create", "backend", "172.22.0.0/24"]);
    run(&lab, "node1", "postgres", &["backend"], &[]);
    run(&lab, "node3", "api", &["backend", "frontend"], &[]);
    run(&lab, "node2", "client", &["frontend"], &[]);
    Some(lab)
}

fn run(lab: &Lab, node: &str, name: &str, nets: &[&str], extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    for n in nets {
        args.extend(["--network", n]);
    }
    args.extend_from_slice(extra);
    args.extend(["--", "sleep", "3600"]);
    lab.cli_ok(node, &args)
}

/// Runs CMD in container NAME on NODE; true if it exits 0.
fn in_container(lab: &Lab, node: &str, name: &str, cmd: &[&str]) -> bool {
    let mut args = vec!["shibafu", "exec", name];
    args.extend_from_slice(cmd);
    lab.exec(node, &args).status.success()
}

fn in_container_out(lab: &Lab, node: &str, name: &str, cmd: &[&str]) -> String {
    let mut args = vec!["shibafu", "exec", name];
    args.extend_from_slice(cmd);
    String::from_utf8_lossy(&lab.exec(node, &args).stdout).into_owned()
}

fn address_of(lab: &Lab, node: &str, name: &str, network: &str) -> String {
    let info = lab
        .agent_get(node, &format!("/v1/containers/{name}"))
        .expect("container info");
    info["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["network"] == network))
        .and_then(|i| i["ipv4"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{name} has no address on {network}: {info}"))
}

fn dig(lab: &Lab, node: &str, name: &str, qname: &str) -> String {
    dig_type(lab, node, name, qname, "A")
}

/// `dig +short QNAME QTYPE` in container NAME on NODE, one try of one second.
fn dig_type(lab: &Lab, node: &str, name: &str, qname: &str, qtype: &str) -> String {
    in_container_out(
        lab,
        node,
        name,
        &["dig", "+short", "+tries=1", "+time=1", qname, qtype],
    )
}

#[test]
fn names_resolve_and_ping_across_nodes() {
    let Some(lab) = cluster() else { return };
    let pg = address_of(&lab, "node1", "postgres", "backend");
    let out = in_container_out(
        &lab,
        "node3",
        "api",
        &["nslookup", "postgres.backend.local"],
    );
    assert!(out.contains(&pg), "nslookup from api: {out}");
    // Bare names go through the search list.
    assert!(in_container(
        &lab,
        "node3",
        "api",
        &["ping", "-c1", "-W2", "postgres"]
    ));
    // A full-size packet with DF set crosses the overlay (overlay MTU 1450 on a 1500 underlay).
    assert!(in_container(
        &lab,
        "node3",
        "api",
        &["ping", "-c1", "-W2", "-M", "do", "-s", "1372", &pg]
    ));
    assert!(!in_container(
        &lab,
        "node3",
        "api",
        &["ping", "-c1", "-W2", "-M", "do", "-s", "1500", &pg]
    ));
    // PTR answers the container's name.
    let ptr = in_container_out(&lab, "node3", "api", &["dig", "+short", "-x", &pg]);
    assert_eq!(ptr.trim(), "postgres.backend.local.");
    lab.down();
}

#[test]
fn isolation_holds_across_nodes_until_linked() {
    let Some(lab) = cluster() else { return };
    let pg = address_of(&lab, "node1", "postgres", "backend");
    // client is only on frontend: backend names do not exist for it, and backend is unreachable.
    let out = in_container_out(
        &lab,
        "node2",
        "client",
        &["dig", "+tries=1", "postgres.backend.local"],
    );
    assert!(out.contains("NXDOMAIN"), "{out}");
    assert!(!in_container(
        &lab,
        "node2",
        "client",
        &["ping", "-c1", "-W1", &pg]
    ));
    // api (on both networks) does not route between them for others.
    lab.cli_ok(
        "node1",
        &["network", "connect-networks", "frontend", "backend"],
    );
    assert!(
        wait_until(Duration::from_secs(5), POLL, || in_container(
            &lab,
            "node2",
            "client",
            &["ping", "-c1", "-W1", &pg]
        )),
        "linked networks still isolated"
    );
    lab.cli_ok("node2", &["network", "isolate", "frontend", "backend"]);
    assert!(
        wait_until(Duration::from_secs(5), POLL, || !in_container(
            &lab,
            "node2",
            "client",
            &["ping", "-c1", "-W1", &pg]
        )),
        "isolate did not cut the networks apart"
    );
    lab.down();
}

#[test]
fn remote_endpoints_have_static_fdb_entries_and_no_flooding() {
    let Some(lab) = cluster() else { return };
    let info = lab
        .agent_get("node1", "/v1/containers/postgres")
        .expect("postgres");
    let mac = info["interfaces"][0]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    let nets = lab.cli_ok("node3", &["network", "inspect", "backend"]);
    let vni: u32 = serde_json::from_str::<serde_json::Value>(&nets).expect("json")["vni"]
        .as_u64()
        .expect("vni") as u32;
    let fdb = lab.exec_ok(
        "node3",
        &["bridge", "fdb", "show", "dev", &format!("sfvx{vni:x}")],
    );
    let node1 = lab.status()["components"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "node1"))
        .and_then(|n| n["addr"].as_str())
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        fdb.contains(&format!("{mac} dst {node1}")),
        "no FDB entry for postgres via node1:\n{fdb}"
    );
    assert!(
        !fdb.contains("00:00:00:00:00:00"),
        "flooding entry present:\n{fdb}"
    );
    // The lab runs its agents with --no-bridge-netfilter: bridged frames skip the nft hooks
    // (the sysctls exist only while br_netfilter is loaded).
    for node in lab.node_names() {
        let cat = "cat /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables 2>/dev/null || echo absent";
        let brnf = lab.exec_ok(&node, &["sh", "-c", cat]);
        assert!(
            !brnf.contains('1'),
            "{node}: bridge-nf-call still on: {brnf}"
        );
    }
    lab.down();
}

#[test]
fn node_loss_removes_names_and_restart_reannounces() {
    let Some(lab) = cluster() else { return };
    assert!(!dig(&lab, "node3", "api", "postgres.backend.local")
        .trim()
        .is_empty());
    lab.lab_ok(&["stop", "node1"]);
    assert!(
        wait_until(LEASE_GONE, POLL, || dig(
            &lab,
            "node3",
            "api",
            "postgres.backend.local"
        )
        .trim()
        .is_empty()),
        "postgres still resolves after its node died"
    );
    lab.lab_ok(&["start", "node1"]);
    assert!(
        wait_until(LEASE_GONE, POLL, || !dig(
            &lab,
            "node3",
            "api",
            "postgres.backend.local"
        )
        .trim()
        .is_empty()),
        "postgres not re-announced after its node came back"
    );
    assert!(in_container(
        &lab,
        "node3",
        "api",
        &["ping", "-c1", "-W2", "postgres"]
    ));
    lab.down();
}

#[test]
fn etcd_outage_keeps_dataplane_and_catches_up() {
    let Some(lab) = cluster() else { return };
    lab.lab_ok(&["stop", "etcd"]);
    // Dataplane and DNS keep serving from the last state.
    assert!(in_container(
        &lab,
        "node3",
        "api",
        &["ping", "-c1", "-W2", "postgres"]
    ));
    // A container started meanwhile (node2 already owns a frontend block) is announced later.
    run(&lab, "node2", "late", &["frontend"], &[]);
    lab.lab_ok(&["start", "etcd"]);
    assert!(
        wait_until(Duration::from_secs(20), POLL, || !dig(
            &lab,
            "node3",
            "api",
            "late.frontend.local"
        )
        .trim()
        .is_empty()),
        "a change made while etcd was down never arrived"
    );
    lab.down();
}

#[test]
fn agent_restart_loses_no_ping() {
    let Some(lab) = cluster() else { return };
    let pg = address_of(&lab, "node1", "postgres", "backend");
    std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            in_container_out(
                &lab,
                "node3",
                "api",
                &["ping", "-i", "0.05", "-c", "80", "-W", "1", &pg],
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        lab.lab_ok(&["stop", "node3"]);
        lab.lab_ok(&["start", "node3"]);
        lab.lab_ok(&["stop", "node1"]);
        lab.lab_ok(&["start", "node1"]);
        let out = pinger.join().expect("ping thread");
        assert!(
            out.contains("80 received"),
            "packets lost across agent restarts:\n{out}"
        );
    });
    lab.down();
}

#[test]
fn service_answers_go_round_the_instances_on_three_nodes() {
    let Some(lab) = cluster() else { return };
    for (i, node) in ["node1", "node2", "node3"].iter().enumerate() {
        run(
            &lab,
            node,
            &format!("web{}", i + 1),
            &["frontend"],
            &["--service", "web", "--port", "80"],
        );
    }
    // Node2 learns of the instances on the other nodes through etcd: wait until its DNS has all
    // three (the SRV answer lists every instance), as a client of a fresh service would.
    let srv = || {
        in_container_out(
            &lab,
            "node2",
            "client",
            &["dig", "+short", "_http._tcp.web.frontend.local", "SRV"],
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), POLL, || srv().lines().count() == 3),
        "node2's DNS never had the three instances: {}",
        srv()
    );
    // One address per answer (see docs/services.md), each instance in turn.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let answer: Vec<String> = dig(&lab, "node2", "client", "web.frontend.local")
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(answer.len(), 1, "{answer:?}");
        seen.extend(answer);
    }
    assert_eq!(
        seen.len(),
        3,
        "three answers do not go round the instances: {seen:?}"
    );
    lab.down();
}

#[test]
fn rm_and_network_rm_leave_nothing() {
    let Some(lab) = cluster() else { return };
    lab.cli_ok("node1", &["rm", "-f", "postgres"]);
    lab.cli_ok("node3", &["rm", "-f", "api"]);
    lab.cli_ok("node2", &["rm", "-f", "client"]);
    lab.cli_ok("node1", &["network", "rm", "backend"]);
    lab.cli_ok("node1", &["network", "rm", "frontend"]);
    for node in ["node1", "node2", "node3"] {
        let links = lab.exec_ok(node, &["ip", "-o", "link"]);
        assert!(
            wait_until(Duration::from_secs(5), POLL, || !lab
                .exec_ok(node, &["ip", "-o", "link"])
                .contains(": sf")),
            "{node} kept shibafu links:\n{links}"
        );
        let netns = lab.state_dir().join("nodes").join(node).join("netns");
        let left: Vec<_> = std::fs::read_dir(&netns)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{node} kept namespace files: {left:?}");
    }
    let ps = lab.cli_ok("node1", &["ps", "-a"]);
    assert!(!ps.contains("postgres"), "{ps}");
    lab.down();
}

#[test]
fn ipv6_works_across_nodes() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok(
        "node1",
        &[
            "network",
            "create",
            "dual",
            "172.24.0.0/24",
            "--subnet6",
            "fd00:24::/64",
        ],
    );
    run(&lab, "node1", "six1", &["dual"], &[]);
    run(&lab, "node2", "six2", &["dual"], &[]);
    // six2's record reaches node1's DNS server through etcd's watch: soon, not at once.
    let mut aaaa = String::new();
    let answered = wait_until(Duration::from_secs(10), POLL, || {
        aaaa = dig_type(&lab, "node1", "six1", "six2.dual.local", "AAAA");
        aaaa.trim().starts_with("fd00:24::")
    });
    assert!(answered, "no AAAA for six2: {aaaa}");
    let reach = || {
        in_container(
            &lab,
            "node1",
            "six1",
            &["ping", "-6", "-c1", "-W2", aaaa.trim()],
        )
    };
    // IPv6 duplicate address detection may hold the address for a moment after start.
    assert!(
        wait_until(Duration::from_secs(5), POLL, reach),
        "ping6 across nodes failed"
    );
    lab.down();
}
