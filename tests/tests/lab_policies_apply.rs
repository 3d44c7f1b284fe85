//! Lab tier, the phase plan's `network-config.yaml` on two nodes: it applies as written, a
//! second apply and applying the export change nothing, `--dry-run` changes nothing, it is
//! enforced as the oracle says, a broken file is refused whole with FILE:LINE:COLUMN for every
//! error, and `--prune` removes what the file no longer names.

mod lab_policies_matrix;

use lab_policies_matrix::{assert_moves, file, oracle_passes, read_cluster, settles, start};
use shibafu_tests::{root_or_skip, text, Lab};

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
    let before = oracle_passes(&read_cluster(&lab));
    let pruned = lab.cli_ok("node1", &["apply", "-f", &smaller, "--prune"]);
    assert!(pruned.contains("- policy web-db-isolation"), "{pruned}");
    let c = read_cluster(&lab);
    assert!(c.policies.is_empty());
    // backend loses the consent that let it into database; database's own endpoints meet again.
    let moved = [
        ("b1 -> d1 tcp:5432", true, false),
        ("d1 -> d2 icmp", false, true),
    ];
    assert_moves(&before, &oracle_passes(&c), &moved);
    settles(&lab, "the policy pruned");
    lab.down();
}
