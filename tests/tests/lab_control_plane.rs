//! Lab tier: containers are kept off the control plane. From a `shibafu run` container, TCP to
//! etcd, the coordinator's API and every metrics endpoint (the coordinator's, its own node's,
//! another node's, and its own node through the gateway address) is dropped, while the same
//! probes from the node itself pass; DNS to the lab's upstream still works. No agent is an open
//! resolver on the underlay.

use std::collections::BTreeMap;

use shibafu_tests::probe::results;
use shibafu_tests::{bin, is_root, text, Lab};

/// Addresses of the lab's hosts: (etcd/ctl, coordinator1, node1, node2).
fn hosts(lab: &Lab) -> [String; 4] {
    let addr = |c: &str| {
        lab.component(c)["addr"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    [
        addr("etcd"),
        addr("coordinator1"),
        addr("node1"),
        addr("node2"),
    ]
}

/// `shibafu-probe check` of `specs` from the container `c1` (or from node1 itself): spec -> ok.
fn probe(lab: &Lab, from_container: bool, specs: &[String]) -> BTreeMap<String, bool> {
    let probe = bin("shibafu-probe").display().to_string();
    let mut args: Vec<&str> = if from_container {
        vec!["shibafu", "exec", "c1", &probe]
    } else {
        vec![&probe]
    };
    args.extend(["check", "--timeout-ms", "1500"]);
    args.extend(specs.iter().map(String::as_str));
    let out = lab.exec("node1", &args);
    assert!(out.status.success(), "probe: {}", text(&out.stderr));
    results(&text(&out.stdout))
}

#[test]
fn containers_never_reach_etcd_the_coordinators_or_metrics() {
    if !is_root() {
        eprintln!("skipping lab-tier control-plane test: needs root");
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.26.0.0/24"]);
    lab.run_idle("node1", "c1", "frontend");
    let [ctl, coord, node1, node2] = hosts(&lab);
    let specs: Vec<String> = [
        format!("tcp:{ctl}:2379"),
        format!("tcp:{coord}:7480"),
        format!("tcp:{coord}:9480"),
        format!("tcp:{node1}:9480"),
        format!("tcp:{node2}:9480"),
    ]
    .into();
    let from_node = probe(&lab, false, &specs);
    assert!(
        from_node.values().all(|ok| *ok) && from_node.len() == specs.len(),
        "the node itself reaches them all (else the probes prove nothing): {from_node:?}"
    );
    let mut all = specs.clone();
    all.push("tcp:172.26.0.1:9480".into());
    let from_c1 = probe(&lab, true, &all);
    assert!(
        from_c1.values().all(|ok| !*ok) && from_c1.len() == all.len(),
        "a container reaches none: {from_c1:?}"
    );

    // The lab's upstream DNS (on the etcd host) is still reached, directly and through the
    // agent's forwarding.
    let direct = lab.cli(
        "node1",
        &[
            "exec",
            "c1",
            "dig",
            "+short",
            "+tries=2",
            "+time=2",
            &format!("@{ctl}"),
            "www.example.com",
        ],
    );
    assert!(
        !text(&direct.stdout).trim().is_empty(),
        "direct: {}",
        text(&direct.stdout)
    );
    let forwarded = lab.cli(
        "node1",
        &[
            "exec",
            "c1",
            "dig",
            "+short",
            "+tries=2",
            "+time=2",
            "www.example.com",
        ],
    );
    assert!(
        !text(&forwarded.stdout).trim().is_empty(),
        "forwarded: {}",
        text(&forwarded.stdout)
    );

    // No agent answers DNS on the underlay: from the control host and from another node.
    for (from, to) in [("ctl", &node1), ("node2", &node1), ("ctl", &node2)] {
        let out = lab.exec(
            from,
            &[
                "dig",
                "+short",
                "+tries=1",
                "+time=1",
                &format!("@{to}"),
                "www.example.com",
            ],
        );
        let answer = text(&out.stdout);
        assert!(
            !out.status.success() || answer.trim().is_empty(),
            "{from} got an answer from {to}:53: {answer}"
        );
    }

    lab.down();
}
