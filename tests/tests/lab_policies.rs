//! Lab tier, network policies across three nodes: containers of three networks, some on the
//! same node and some not, each serving TCP 80 and 5432, UDP 5353 and answering ping. After
//! every step of a sequence that creates policies (with the CLI, as the phase plan writes it),
//! changes one (with `shibafu apply -f`, the user's way to change a policy), removes them and
//! starts a container later on another node, the observed result of every probe from every
//! container to every other equals the oracle's verdict for the state read back from etcd.
//! Removing every policy restores today's reachability. The plan's configuration file is in
//! `lab_policies_apply.rs`.

mod lab_policies_matrix;

use lab_policies_matrix::{assert_moves, file, oracle_passes, read_cluster, settles, start};
use shibafu_tests::{root_or_skip, text, Lab};

/// Containers: (name, node, network, service).
const CONTAINERS: [(&str, &str, &str, Option<&str>); 5] = [
    ("f1", "node1", "frontend", None),
    ("f2", "node2", "frontend", None),
    ("b1", "node2", "backend", Some("api")),
    ("d1", "node3", "database", None),
    ("d2", "node1", "database", Some("db")),
];

/// database-isolation changed: the plan's form for the peer network, the flag form for the
/// network's own endpoints.
const CHANGED_YAML: &str = r#"policies:
  - name: database-isolation
    network: database
    rules:
      - allow: {from: frontend, to: database, ports: [5432]}
      - allow-ingress-from: database
"#;

#[test]
fn reachability_follows_the_oracle_through_policies_on_three_nodes() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(3);
    for (name, subnet) in [
        ("frontend", "172.31.1.0/24"),
        ("backend", "172.31.2.0/24"),
        ("database", "172.31.3.0/24"),
    ] {
        lab.cli_ok("node1", &["network", "create", name, subnet]);
    }
    lab.cli_ok(
        "node1",
        &["network", "connect-networks", "frontend", "database"],
    );
    for (name, node, network, service) in CONTAINERS {
        start(&lab, name, node, network, service);
    }
    settles(&lab, "no policies");
    let before = lab.cli_ok("node1", &["network", "policy", "list"]);
    assert_eq!(before.lines().count(), 1, "only the header: {before}");

    // The phase plan's example, as written.
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
            "--allow-ingress-from",
            "backend:5432",
        ],
    );
    settles(&lab, "database-isolation");
    let list = lab.cli_ok("node1", &["network", "policy", "list"]);
    assert!(
        list.contains("database-isolation") && list.contains("database"),
        "{list}"
    );

    // Egress isolation of a network, a service's consent between networks that are not
    // linked, a container peer, and a deny that wins over an allow.
    lab.cli_ok(
        "node2",
        &[
            "network",
            "policy",
            "create",
            "--name",
            "frontend-out",
            "--network",
            "frontend",
            "--allow-egress-to",
            "database:5432",
            "--allow-egress-to",
            "service:api:80,5353/any",
            "--deny-egress-to",
            "container:d2",
        ],
    );
    lab.cli_ok(
        "node3",
        &[
            "network",
            "policy",
            "create",
            "--name",
            "api-open",
            "--network",
            "backend",
            "--service",
            "api",
            "--allow-ingress-from",
            "frontend:80",
            "--allow-ingress-from",
            "frontend:5353/udp",
        ],
    );
    settles(&lab, "egress isolation and consent");

    // A container started later, on a third node, joins the sets of the service it is in.
    start(&lab, "b2", "node3", "backend", Some("api"));
    settles(&lab, "a later instance on another node");

    // Counters, summed over the nodes, show the denied probes.
    let inspect = lab.cli_ok(
        "node1",
        &[
            "network",
            "policy",
            "inspect",
            "database-isolation",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect json");
    let dropped = v["rules"][0]["dropped"].as_u64().unwrap_or(0);
    assert!(dropped > 0, "the deny rule counted nothing: {inspect}");

    // Bad input is refused and changes nothing.
    for bad in [
        vec!["--allow-ingress-from", "backend:0"],
        vec!["--allow-ingress-from", "backend:90-80"],
        vec!["--allow-ingress-from", "backend:80/icmp"],
        vec!["--allow-ingress-from", "nowhere"],
        vec!["--deny-ingress-from", "service:ghost"],
    ] {
        let mut args = vec![
            "network",
            "policy",
            "create",
            "--name",
            "bad",
            "--network",
            "database",
        ];
        args.extend(bad.iter().copied());
        let out = lab.cli("node1", &args);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(!text(&out.stderr).trim().is_empty(), "{bad:?}: no message");
    }
    let dup = lab.cli(
        "node1",
        &[
            "network",
            "policy",
            "create",
            "--name",
            "api-open",
            "--network",
            "backend",
            "--deny-ingress-from",
            "any",
        ],
    );
    assert!(!dup.status.success(), "a duplicate name was accepted");
    assert_eq!(
        read_cluster(&lab).policies.len(),
        3,
        "a refused policy left something"
    );

    // A change, the user's way: apply a file in which database-isolation differs. The
    // database now takes frontend on 5432 and its own endpoints, and no longer backend (which
    // is not linked to it).
    let before = oracle_passes(&read_cluster(&lab));
    let changed = file(&lab, "database-isolation.yaml", CHANGED_YAML);
    let out = lab.cli_ok("node2", &["apply", "-f", &changed]);
    assert!(out.contains("~ policy database-isolation"), "{out}");
    let c = read_cluster(&lab);
    assert_eq!(
        c.policies.len(),
        3,
        "apply without --prune removed a policy"
    );
    let stored = c.policies.iter().find(|p| p.name == "database-isolation");
    let rules: Vec<String> = stored
        .expect("database-isolation")
        .rules
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        rules,
        [
            "--allow-ingress-from frontend:5432/tcp",
            "--allow-ingress-from database/any",
        ]
    );
    let moved = [
        ("f1 -> d1 tcp:5432", false, true),
        ("b1 -> d1 tcp:5432", true, false),
        ("d1 -> d2 icmp", false, true),
    ];
    assert_moves(&before, &oracle_passes(&c), &moved);
    settles(&lab, "database-isolation changed by apply");

    for name in ["database-isolation", "frontend-out", "api-open"] {
        lab.cli_ok("node1", &["network", "policy", "rm", name]);
    }
    settles(&lab, "every policy removed");
    lab.down();
}
