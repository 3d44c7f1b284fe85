//! Lab tier, diagnosis: on one 3-node lab, `network routes`, `topology`, `dns-trace` and
//! `diagnose` describe a healthy cluster, then real faults are injected one after another and
//! each is named in the output with a non-zero exit: a missing DNS name, a policy denial, a
//! deleted VXLAN FDB entry, a stopped container, a partitioned node and a node that is down.

use std::process::Output;
use std::time::Duration;

use shibafu_tests::{bin, root_or_skip, text, wait_until, Lab};

const POLL: Duration = Duration::from_millis(200);

/// frontend (web1 on node1, web2 on node2) linked to database (db1 on node3); every container
/// serves TCP 80 and 5432 and UDP 5353.
fn cluster() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(3);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.cli_ok("node1", &["network", "create", "database", "172.23.0.0/24"]);
    lab.cli_ok(
        "node1",
        &["network", "connect-networks", "frontend", "database"],
    );
    for (name, node, net) in [
        ("web1", "node1", "frontend"),
        ("web2", "node2", "frontend"),
        ("db1", "node3", "database"),
    ] {
        start(&lab, name, node, net);
    }
    Some(lab)
}

fn start(lab: &Lab, name: &str, node: &str, network: &str) {
    let probe = bin("shibafu-probe").display().to_string();
    let args = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "--",
        &probe,
        "serve",
        "--tcp",
        "80",
        "--tcp",
        "5432",
        "--udp",
        "5353",
    ];
    lab.cli_ok(node, &args);
}

/// Exit success and stdout + stderr of the CLI on node1.
fn cli(lab: &Lab, args: &[&str]) -> (bool, String) {
    let out: Output = lab.cli("node1", args);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn diagnose(lab: &Lab, from: &str, to: &str, port: &str) -> (bool, String) {
    cli(
        lab,
        &[
            "network",
            "diagnose",
            "--from",
            from,
            "--to",
            to,
            "--port",
            port,
            "--timeout-ms",
            "800",
        ],
    )
}

/// The failed step's line of a diagnose report.
fn failed_step(report: &str) -> Option<&str> {
    report.lines().find(|l| l.contains(" FAIL "))
}

fn json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let out = lab.cli_ok("node1", args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn healthy_cluster_is_described(lab: &Lab) {
    let (ok, report) = diagnose(lab, "web1", "web2", "80");
    assert!(ok, "{report}");
    for step in [
        "containers",
        "dns",
        "interfaces",
        "fabric",
        "underlay",
        "policy",
        "probe",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(step) && l.contains(" ok ")),
            "step {step} did not pass:\n{report}"
        );
    }
    assert!(report.contains("tcp/80 from web1 to web2"), "{report}");
    let (ok, report) = diagnose(lab, "web1", "db1", "5432");
    assert!(
        ok && report.contains("networks frontend and database are linked"),
        "{report}"
    );

    let routes = lab.cli_ok("node1", &["network", "routes", "--container", "web2"]);
    assert!(
        routes.starts_with("Container web2 on node2 (running"),
        "{routes}"
    );
    let eth0 = routes
        .lines()
        .find(|l| l.starts_with("eth0"))
        .unwrap_or_default();
    assert!(
        eth0.contains("172.21.0.") && eth0.contains("(bridge sfbr"),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default") && l.contains("172.21.0.1")),
        "{routes}"
    );

    let topo = lab.cli_ok("node1", &["network", "topology"]);
    for want in [
        "node1",
        "node3",
        "frontend 172.21.0.0/24",
        "    db1",
        "database <-> frontend",
    ] {
        assert!(topo.contains(want), "missing {want:?}:\n{topo}");
    }
    let dot = lab.cli_ok("node1", &["network", "topology", "--format", "dot"]);
    assert!(
        dot.starts_with("digraph shibafu {") && dot.contains("\"c:node3/db1\""),
        "{dot}"
    );
    let (ok, svg) = cli(lab, &["network", "topology", "--format", "svg"]);
    if ok {
        assert!(svg.contains("<svg") && svg.contains("db1"), "{svg}");
    } else {
        assert!(svg.contains("install graphviz"), "{svg}");
    }

    let (ok, local) = cli(
        lab,
        &[
            "network",
            "dns-trace",
            "--query",
            "web2.frontend.local",
            "--from",
            "web1",
        ],
    );
    assert!(ok, "{local}");
    assert!(
        local.contains("local answer from zone frontend.local."),
        "{local}"
    );
    assert!(
        local.contains("Server:     network frontend on node1"),
        "{local}"
    );
    let (ok, external) = cli(
        lab,
        &[
            "network",
            "dns-trace",
            "--query",
            "www.example.com",
            "--from",
            "web1",
        ],
    );
    assert!(
        ok && external.contains("forwarder: ") && external.contains(":53 answered in"),
        "{external}"
    );
    let (ok, cached) = cli(
        lab,
        &[
            "network",
            "dns-trace",
            "--query",
            "www.example.com",
            "--from",
            "web1",
        ],
    );
    assert!(ok && cached.contains("forwarder cache"), "{cached}");
}

#[test]
fn diagnosis_names_every_fault() {
    let Some(lab) = cluster() else { return };
    healthy_cluster_is_described(&lab);

    // A missing DNS name.
    let (ok, out) = cli(
        &lab,
        &[
            "network",
            "dns-trace",
            "--query",
            "nosuch.frontend.local",
            "--from",
            "web1",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("NXDOMAIN: no such name in zone frontend.local."),
        "{out}"
    );

    // A policy denial.
    lab.cli_ok(
        "node1",
        &[
            "network",
            "policy",
            "create",
            "--name",
            "database-isolation",
            "--network",
            "database",
            "--deny-ingress-from",
            "frontend",
        ],
    );
    let (ok, out) = diagnose(&lab, "web1", "db1", "5432");
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(line.starts_with("policy"), "{out}");
    assert!(
        line.contains("policy database-isolation rule 1 (deny ingress from frontend) denies web1 -> db1:5432/tcp"),
        "{out}"
    );
    lab.cli_ok("node1", &["network", "policy", "rm", "database-isolation"]);

    // A deleted VXLAN FDB entry on node1 (the agent restores it within 30 s, so retry if a
    // resync came in between).
    let web2 = json(
        &lab,
        &[
            "network",
            "routes",
            "--container",
            "web2",
            "--format",
            "json",
        ],
    );
    let mac = web2["inside"]["links"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "eth0"))
        .and_then(|l| l["mac"].as_str())
        .expect("web2 mac")
        .to_string();
    let vni = json(&lab, &["network", "inspect", "frontend"])["vni"]
        .as_u64()
        .expect("vni");
    let vx = format!("sfvx{vni:x}");
    let nodes = json(&lab, &["node", "ls", "--format", "json"]);
    let node2 = nodes
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == "node2"))
        .and_then(|n| n["underlay"].as_str())
        .expect("node2 underlay")
        .to_string();
    let mut named = String::new();
    for _ in 0..3 {
        lab.exec_ok(
            "node1",
            &[
                "bridge", "fdb", "del", &mac, "dev", &vx, "dst", &node2, "self",
            ],
        );
        let (ok, out) = diagnose(&lab, "web1", "web2", "80");
        if !ok {
            named = out;
            break;
        }
    }
    let line = failed_step(&named).unwrap_or_default();
    assert!(line.starts_with("fabric"), "{named}");
    assert!(
        line.contains(&format!(
            "node1 has no VXLAN FDB entry for web2 ({mac}) -> {node2} on {vx}"
        )),
        "{named}"
    );
    lab.exec_ok(
        "node1",
        &[
            "bridge",
            "fdb",
            "append",
            &mac,
            "dev",
            &vx,
            "dst",
            &node2,
            "self",
            "permanent",
        ],
    );
    assert!(diagnose(&lab, "web1", "web2", "80").0, "restored");

    // A stopped container.
    lab.cli_ok("node2", &["stop", "web2"]);
    let (ok, out) = diagnose(&lab, "web1", "web2", "80");
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("containers") && line.contains("container web2 on node2 is stopped"),
        "{out}"
    );
    let (ok, out) = cli(&lab, &["network", "routes", "--container", "web2"]);
    assert!(!ok, "{out}");
    assert!(out.starts_with("Container web2 on node2 (exited"), "{out}");
    assert!(
        out.contains("Cannot look inside: container is exited"),
        "{out}"
    );
    lab.cli_ok("node2", &["rm", "web2"]);
    start(&lab, "web2", "node2", "frontend");

    // A partitioned node: named before its lease runs out.
    lab.lab_ok(&["partition", "node2"]);
    let (ok, out) = diagnose(&lab, "web1", "web2", "80");
    lab.lab_ok(&["heal", "node2"]);
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("underlay") && line.contains("the nodes are partitioned"),
        "{out}"
    );
    assert!(
        wait_until(Duration::from_secs(30), POLL, || diagnose(
            &lab, "web1", "web2", "80"
        )
        .0),
        "the path did not come back after heal: {}",
        diagnose(&lab, "web1", "web2", "80").1
    );

    // A node that is down: its agent stops answering at once, its lease goes later.
    lab.lab_ok(&["stop", "node2"]);
    let (ok, out) = diagnose(&lab, "web1", "web2", "80");
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(
        line.starts_with("containers") && line.contains("node node2 (of web2) is down"),
        "{out}"
    );
    assert!(
        wait_until(Duration::from_secs(15), POLL, || {
            let (_, out) = diagnose(&lab, "web1", "web2", "80");
            failed_step(&out).is_some_and(|l| {
                l.contains("no container named web2 on any live node (node1, node3)")
            })
        }),
        "after the lease: {}",
        diagnose(&lab, "web1", "web2", "80").1
    );
    lab.down();
}
