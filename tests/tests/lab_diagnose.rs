//! Lab tier, diagnosis: on one 3-node lab, `network routes`, `topology`, `dns-trace` and
//! `diagnose` (over TCP, UDP and ICMP) describe a healthy cluster, then faults are injected one
//! after another and each is named in the output with a non-zero exit: a missing DNS name, a
//! policy denial (which `topology` shows) and a deleted VXLAN FDB entry. A stopped or removed
//! container, a partitioned node and a node that is down are in `lab_diagnose_faults.rs`.

mod lab_diagnose_cluster;

use lab_diagnose_cluster::{cli, cluster, diagnose, failed_step};
use shibafu_tests::Lab;

const TCP_80: &[&str] = &["--port", "80"];

fn json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let out = lab.cli_ok("node1", args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn healthy_cluster_is_described(lab: &Lab) {
    let (ok, report) = diagnose(lab, "web1", "web2", TCP_80);
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
    let (ok, report) = diagnose(
        lab,
        "web1",
        "web2",
        &["--protocol", "udp", "--port", "5353"],
    );
    assert!(ok, "{report}");
    assert!(
        report.contains("Diagnosing web1 -> web2 (udp/5353)")
            && report.contains("udp/5353 from web1 to web2 172.21.0."),
        "{report}"
    );
    let (ok, report) = diagnose(lab, "web1", "web2", &["--protocol", "icmp"]);
    assert!(ok, "{report}");
    assert!(
        report.contains("icmp from web1 to web2 172.21.0.") && report.contains(": echo reply in"),
        "{report}"
    );
    let (ok, report) = diagnose(
        lab,
        "web1",
        "web2",
        &["--protocol", "udp", "--port", "5999"],
    );
    assert!(!ok, "{report}");
    assert!(
        failed_step(&report).is_some_and(|l| l.starts_with("probe")
            && l.contains("udp/5999 from web1 to web2")
            && l.contains("port unreachable: nothing listens on that port")),
        "{report}"
    );
    let (ok, report) = diagnose(lab, "web1", "db1", &["--port", "5432"]);
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
    // Graphviz is a dependency (deploy/install-deps.sh): the picture must be drawn.
    let (ok, svg) = cli(lab, &["network", "topology", "--format", "svg"]);
    assert!(ok, "{svg}");
    assert!(
        svg.contains("<svg") && svg.contains("db1") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );

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
fn diagnosis_names_a_missing_name_a_policy_denial_and_a_lost_fdb_entry() {
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
    let (ok, out) = diagnose(&lab, "web1", "db1", &["--port", "5432"]);
    assert!(!ok, "{out}");
    let line = failed_step(&out).unwrap_or_default();
    assert!(line.starts_with("policy"), "{out}");
    assert!(
        line.contains("policy database-isolation rule 1 (deny ingress from frontend) denies web1 -> db1:5432/tcp"),
        "{out}"
    );
    for (flow, words) in [
        (
            &["--protocol", "udp", "--port", "5353"][..],
            "web1 -> db1:5353/udp",
        ),
        (&["--protocol", "icmp"][..], "web1 -> db1 (icmp)"),
    ] {
        let (ok, out) = diagnose(&lab, "web1", "db1", flow);
        assert!(!ok, "{out}");
        let line = failed_step(&out).unwrap_or_default();
        assert!(
            line.starts_with("policy")
                && line.contains(&format!(
                    "policy database-isolation rule 1 (deny ingress from frontend) denies {words}"
                )),
            "{out}"
        );
    }
    let topo = lab.cli_ok("node1", &["network", "topology"]);
    assert!(
        topo.contains(
            "Policies:\n  database-isolation on database\n    rule 1: deny ingress from frontend\n"
        ),
        "{topo}"
    );
    let dot = lab.cli_ok("node1", &["network", "topology", "--format", "dot"]);
    assert!(dot.contains("database-isolation"), "{dot}");
    lab.cli_ok("node1", &["network", "policy", "rm", "database-isolation"]);
    let topo = lab.cli_ok("node1", &["network", "topology"]);
    assert!(!topo.contains("database-isolation"), "{topo}");

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
        let (ok, out) = diagnose(&lab, "web1", "web2", TCP_80);
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
    assert!(diagnose(&lab, "web1", "web2", TCP_80).0, "restored");

    lab.down();
}
