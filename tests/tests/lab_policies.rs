//! Lab tier, network policies across three nodes: containers of three networks, some on the
//! same node and some not, each serving TCP 80 and 5432, UDP 5353 and answering ping. After
//! every step of a sequence that creates (with the CLI, as the phase plan writes it), changes
//! and removes policies and starts a container later on another node, the observed result of
//! every probe from every container to every other equals the oracle's verdict for the state
//! read back from etcd. Removing every policy restores today's reachability.

use std::time::Duration;

use shibafu_overlay::model::{decode, Endpoint, Link, Network, Policy};
use shibafu_overlay::policy::PolicyView;
use shibafu_overlay::store::keys::Key;
use shibafu_tests::probe::{check_args, mismatches, probes_from, results, SERVE_ARGS};
use shibafu_tests::{bin, root_or_skip, text, wait_until, Lab};

/// How long a change may take to be enforced everywhere before the test gives up (the goal
/// is 100 ms; this only bounds a failing run).
const SETTLE: Duration = Duration::from_secs(10);

/// The cluster as etcd holds it.
#[derive(Default)]
struct Cluster {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    links: Vec<Link>,
    policies: Vec<Policy>,
}

fn read_cluster(lab: &Lab) -> Cluster {
    let out = lab.exec_ok("node1", &["etcdctl", "get", "--prefix", "/shibafu/v1/"]);
    let lines: Vec<&str> = out.lines().collect();
    let mut c = Cluster::default();
    for pair in lines.chunks(2) {
        let [key, value] = pair else { continue };
        match Key::parse(key) {
            Some(Key::Network(_)) => c
                .networks
                .push(decode(key, value.as_bytes()).expect("network")),
            Some(Key::Endpoint { .. }) => c
                .endpoints
                .push(decode(key, value.as_bytes()).expect("endpoint")),
            Some(Key::Link(..)) => c.links.push(decode(key, value.as_bytes()).expect("link")),
            Some(Key::Policy(_)) => c
                .policies
                .push(decode(key, value.as_bytes()).expect("policy")),
            _ => {}
        }
    }
    c
}

/// Containers: (name, node, network, service).
const CONTAINERS: [(&str, &str, &str, Option<&str>); 5] = [
    ("f1", "node1", "frontend", None),
    ("f2", "node2", "frontend", None),
    ("b1", "node2", "backend", Some("api")),
    ("d1", "node3", "database", None),
    ("d2", "node1", "database", Some("db")),
];

fn start(lab: &Lab, name: &str, node: &str, network: &str, service: Option<&str>) {
    let probe = bin("shibafu-probe").display().to_string();
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    if let Some(s) = service {
        args.extend(["--service", s]);
    }
    args.push("--");
    args.push(&probe);
    args.extend(SERVE_ARGS);
    let out = lab.cli(node, &args);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
}

/// Probes every pair once; the lines that differ from the oracle.
fn differences(lab: &Lab) -> Vec<String> {
    let c = read_cluster(lab);
    let view = PolicyView::new(&c.networks, &c.endpoints, &c.links, &c.policies);
    let probe = bin("shibafu-probe").display().to_string();
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let runs: Vec<_> = c
            .endpoints
            .iter()
            .map(|src| {
                let node = src.node.clone();
                let probes = probes_from(src, &c.endpoints);
                let probe = probe.clone();
                let h = s.spawn(move || {
                    let mut args = vec!["exec".to_string(), src.name.clone(), probe];
                    args.extend(check_args(&probes));
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    lab.cli(&node, &args)
                });
                (src, probes_from(src, &c.endpoints), h)
            })
            .collect();
        for (src, probes, h) in runs {
            let done = h.join().expect("probe thread");
            assert!(
                done.status.success(),
                "probe from {}: {}",
                src.name,
                text(&done.stderr)
            );
            out.extend(mismatches(
                &view,
                src,
                &probes,
                &results(&text(&done.stdout)),
            ));
        }
    });
    out
}

/// Waits until every probe matches the oracle; panics with the differences otherwise.
fn settles(lab: &Lab, step: &str) {
    let mut last = Vec::new();
    let ok = wait_until(SETTLE, Duration::from_millis(100), || {
        last = differences(lab);
        last.is_empty()
    });
    assert!(
        ok,
        "{step}: {} probes differ from the oracle:\n{}",
        last.len(),
        last.join("\n")
    );
}

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

    for name in ["database-isolation", "frontend-out", "api-open"] {
        lab.cli_ok("node1", &["network", "policy", "rm", name]);
    }
    settles(&lab, "every policy removed");
    lab.down();
}

/// The phase plan's configuration file, as written.
const SEED_YAML: &str = r#"# network-config.yaml
networks:
  frontend:
    subnet: "172.21.0.0/24"
    dns:
      zone: "frontend.local"
      forwarders: ["8.8.8.8", "8.8.4.4"]
  backend:
    subnet: "172.22.0.0/24"
    isolation: strict

policies:
  - name: "web-db-isolation"
    rules:
      - deny: {from: "frontend", to: "database"}
      - allow: {from: "backend", to: "database", ports: [5432]}
"#;

/// Writes `text` to a file under the lab's state directory; returns its path.
fn file(lab: &Lab, name: &str, text: &str) -> String {
    let p = lab.state_dir().join(name);
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}

#[test]
fn the_plans_configuration_file_applies_converges_and_is_enforced() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", "database", "172.23.0.0/24"]);
    let seed = file(&lab, "network-config.yaml", SEED_YAML);
    let dry = lab.cli_ok("node1", &["apply", "-f", &seed, "--dry-run"]);
    assert!(
        dry.contains("+ network frontend") && dry.contains("+ policy web-db-isolation"),
        "{dry}"
    );
    assert_eq!(
        read_cluster(&lab).networks.len(),
        1,
        "--dry-run changed the cluster"
    );
    let first = lab.cli_ok("node1", &["apply", "-f", &seed]);
    assert!(first.contains("+ network backend"), "{first}");
    let again = lab.cli_ok("node1", &["apply", "-f", &seed]);
    assert!(
        again.contains("no changes"),
        "a second apply changed something: {again}"
    );
    let c = read_cluster(&lab);
    let backend = c
        .networks
        .iter()
        .find(|n| n.name == "backend")
        .expect("backend");
    assert_eq!(backend.isolation.to_string(), "strict");
    assert_eq!(c.policies.len(), 1);
    assert_eq!(c.policies[0].network, "database");

    // Enforced as the oracle says, across the two nodes.
    start(&lab, "f1", "node1", "frontend", None);
    start(&lab, "b1", "node2", "backend", None);
    start(&lab, "d1", "node2", "database", None);
    start(&lab, "d2", "node1", "database", None);
    settles(&lab, "the seed file applied");

    // Export round trip: applying the export changes nothing.
    let export = lab.cli_ok("node1", &["export"]);
    let exported = file(&lab, "export.yaml", &export);
    let same = lab.cli_ok("node1", &["apply", "-f", &exported]);
    assert!(
        same.contains("no changes"),
        "applying the export changed something: {same}\n{export}"
    );

    // A broken file is refused whole, with FILE:LINE:COLUMN for every error.
    let broken = file(
        &lab,
        "broken.yaml",
        "networks:\n  extra:\n    subnet: \"172.24.0.0/24\"\n  bad:\n    subnet: \"10.0.0.0/33\"\npolicies:\n  - name: p\n    network: database\n    rules:\n      - allow-ingress-from: \"backend:0\"\n",
    );
    let out = lab.cli("node1", &["apply", "-f", &broken]);
    assert!(!out.status.success(), "a broken file was applied");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{broken}:5:")),
        "no position for the subnet: {err}"
    );
    assert!(
        err.contains(&format!("{broken}:10:")),
        "no position for the rule: {err}"
    );
    assert!(
        !read_cluster(&lab)
            .networks
            .iter()
            .any(|n| n.name == "extra"),
        "half applied"
    );

    // --prune removes what the file no longer names (database stays: it has endpoints).
    let smaller = file(&lab, "smaller.yaml", "networks:\n  frontend:\n    subnet: \"172.21.0.0/24\"\n    dns:\n      zone: \"frontend.local\"\n      forwarders: [\"8.8.8.8\", \"8.8.4.4\"]\n  database:\n    subnet: \"172.23.0.0/24\"\n  backend:\n    subnet: \"172.22.0.0/24\"\n    isolation: strict\n");
    let pruned = lab.cli_ok("node1", &["apply", "-f", &smaller, "--prune"]);
    assert!(pruned.contains("- policy web-db-isolation"), "{pruned}");
    assert!(read_cluster(&lab).policies.is_empty());
    settles(&lab, "the policy pruned");
    lab.down();
}
