//! The cluster the diagnosis lab tests share, and how they run the commands: frontend (web1 on
//! node1, web2 on node2) linked to database (db1 on node3); every container serves TCP 80 and
//! 5432 and UDP 5353.

use std::process::Output;

use shibafu_tests::{bin, root_or_skip, text, Lab};

/// A 3-node lab with the networks and containers above; `None` when not root (skipped).
pub fn cluster() -> Option<Lab> {
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

/// Starts container `name` on `node` on `network`, serving the ports above.
pub fn start(lab: &Lab, name: &str, node: &str, network: &str) {
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

/// Exit success and stdout + stderr of the CLI on `node`.
pub fn cli_on(lab: &Lab, node: &str, args: &[&str]) -> (bool, String) {
    let out: Output = lab.cli(node, args);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Exit success and stdout + stderr of the CLI on node1.
pub fn cli(lab: &Lab, args: &[&str]) -> (bool, String) {
    cli_on(lab, "node1", args)
}

/// `network diagnose --from FROM --to TO` with the flow's flags (`--port 80`, `--protocol udp
/// --port 5353`), each probe bounded to 800 ms, on node1.
pub fn diagnose(lab: &Lab, from: &str, to: &str, flow: &[&str]) -> (bool, String) {
    let mut args = vec![
        "network",
        "diagnose",
        "--from",
        from,
        "--to",
        to,
        "--timeout-ms",
        "800",
    ];
    args.extend_from_slice(flow);
    cli(lab, &args)
}

/// The failed step's line of a diagnose report.
pub fn failed_step(report: &str) -> Option<&str> {
    report.lines().find(|l| l.contains(" FAIL "))
}
