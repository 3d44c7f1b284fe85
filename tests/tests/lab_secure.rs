//! Lab tier: the authenticated control plane, as the lab runs it by default. etcd takes only
//! clients with a certificate of the lab's CA whose name is one of its users (RBAC), the
//! coordinator serves TLS to certificate holders only and lets a read-only certificate read but
//! not change; `shibafu status` shows when each certificate expires; the keys are 0600.
//! `--insecure` still gives the plain lab.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use shibafu_tests::{root_or_skip, text, Lab};

/// `shibafu-lab exec node1 -- env ... shibafu ARGS` with the variables of `env` set
/// (`NAME=VALUE`) or removed (`-u NAME`).
fn cli_with(lab: &Lab, env: &[&str], args: &[&str]) -> std::process::Output {
    let mut full = vec!["env"];
    full.extend_from_slice(env);
    full.push("shibafu");
    full.extend_from_slice(args);
    lab.exec("node1", &full)
}

/// Networks the coordinator lists (names), as admin.
fn networks(lab: &Lab) -> String {
    lab.cli_ok("node1", &["network", "ls"])
}

#[test]
fn only_holders_of_the_cluster_ca_reach_etcd_and_the_coordinator_and_roles_decide() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(2);
    let status = lab.status();
    assert_eq!(status["secure"], true, "{status}");
    assert!(status["etcd_url"]
        .as_str()
        .unwrap_or_default()
        .starts_with("https://"));
    let coord = status["coordinator_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(coord.starts_with("https://"), "{status}");
    let pki = PathBuf::from(status["pki"].as_str().expect("pki dir"));
    for key in [
        "ca-key.pem",
        "admin-key.pem",
        "node1-key.pem",
        "etcd-key.pem",
    ] {
        let mode = std::fs::metadata(pki.join(key))
            .expect(key)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let p = |f: &str| pki.join(f).display().to_string();

    // The admin (what `exec` gives the CLI) changes the cluster.
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    lab.run_idle("node1", "web", "frontend");

    // A read-only certificate reads, and is refused a change that then did not happen.
    let reader = [
        format!("SHIBAFU_TLS_CERT={}", p("reader.pem")),
        format!("SHIBAFU_TLS_KEY={}", p("reader-key.pem")),
    ];
    let reader: Vec<&str> = reader.iter().map(String::as_str).collect();
    let ls = cli_with(&lab, &reader, &["network", "ls"]);
    assert!(
        ls.status.success() && text(&ls.stdout).contains("frontend"),
        "{}",
        text(&ls.stderr)
    );
    let create = cli_with(
        &lab,
        &reader,
        &["network", "create", "backend", "172.22.0.0/24"],
    );
    assert!(!create.status.success());
    assert!(
        text(&create.stderr).contains("reader (read-only) may not POST /v1/networks"),
        "{}",
        text(&create.stderr)
    );
    let rm = cli_with(&lab, &reader, &["network", "rm", "frontend", "--force"]);
    assert!(!rm.status.success(), "a reader removed a network");
    let now = networks(&lab);
    assert!(
        now.contains("frontend") && !now.contains("backend"),
        "{now}"
    );

    // No certificate, or another CA's: no answer at all.
    let none = cli_with(
        &lab,
        &[
            "-u",
            "SHIBAFU_TLS_CA",
            "-u",
            "SHIBAFU_TLS_CERT",
            "-u",
            "SHIBAFU_TLS_KEY",
        ],
        &["network", "ls"],
    );
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("needs the cluster CA and a client certificate"),
        "{}",
        text(&none.stderr)
    );
    let other = lab.state_dir().join("other-ca");
    let o = other.display().to_string();
    lab.cli_ok("node1", &["cert", "init", "--dir", &o]);
    lab.cli_ok(
        "node1",
        &["cert", "issue", "--for", "cli", "mallory", "--dir", &o],
    );
    let mallory = [
        format!("SHIBAFU_TLS_CERT={o}/mallory.pem"),
        format!("SHIBAFU_TLS_KEY={o}/mallory-key.pem"),
    ];
    let mallory: Vec<&str> = mallory.iter().map(String::as_str).collect();
    let stranger = cli_with(&lab, &mallory, &["network", "rm", "frontend", "--force"]);
    assert!(
        !stranger.status.success(),
        "another CA's admin removed a network"
    );
    assert!(networks(&lab).contains("frontend"));
    let curl = |args: &[&str]| {
        let mut full = vec![
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ];
        full.extend_from_slice(args);
        text(&lab.exec("node1", &full).stdout)
    };
    let url = format!("{coord}/v1/networks");
    let plain = url.replacen("https://", "http://", 1);
    assert_eq!(curl(&[&plain]), "000", "plain HTTP gets no answer");
    assert_eq!(
        curl(&["--cacert", &p("ca.pem"), &url]),
        "000",
        "TLS without a certificate gets no answer"
    );
    let (ca, cert, key) = (p("ca.pem"), p("admin.pem"), p("admin-key.pem"));
    assert_eq!(
        curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]),
        "200"
    );

    // etcd: the agent's certificate reads; none, or another CA's, does not.
    let etcdctl = |env: &[&str]| {
        let mut full = vec!["env"];
        full.extend_from_slice(env);
        full.extend([
            "etcdctl",
            "--dial-timeout",
            "2s",
            "--command-timeout",
            "3s",
            "get",
            "--prefix",
            "--keys-only",
            "/shibafu/v1/networks/",
        ]);
        lab.exec("node1", &full)
    };
    let agent = [
        format!("ETCDCTL_CERT={}", p("node1.pem")),
        format!("ETCDCTL_KEY={}", p("node1-key.pem")),
    ];
    let agent: Vec<&str> = agent.iter().map(String::as_str).collect();
    let read = etcdctl(&agent);
    assert!(
        text(&read.stdout).contains("/shibafu/v1/networks/frontend"),
        "{}",
        text(&read.stderr)
    );
    assert!(!etcdctl(&["-u", "ETCDCTL_CERT", "-u", "ETCDCTL_KEY"])
        .status
        .success());
    let theirs = [
        format!("ETCDCTL_CERT={o}/mallory.pem"),
        format!("ETCDCTL_KEY={o}/mallory-key.pem"),
    ];
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    assert!(
        !etcdctl(&theirs).status.success(),
        "another CA's certificate reached etcd"
    );
    let read_only = [
        format!("ETCDCTL_CERT={}", p("reader.pem")),
        format!("ETCDCTL_KEY={}", p("reader-key.pem")),
    ];
    let read_only: Vec<&str> = read_only.iter().map(String::as_str).collect();
    let denied = etcdctl(&read_only);
    assert!(!denied.status.success(), "etcd's RBAC let the reader in");
    assert!(
        text(&denied.stderr).contains("permission denied")
            || text(&denied.stderr).contains("user name not found"),
        "{}",
        text(&denied.stderr)
    );

    // Every certificate's expiry shows in `shibafu status`.
    let st = lab.cli_ok("node1", &["status"]);
    for who in [
        "coordinator1 (coordinator)",
        "node1 (agent)",
        "admin (admin)",
    ] {
        assert!(st.contains(&format!("{who}, expires")), "{who}: {st}");
    }
}

#[test]
fn the_insecure_lab_is_plain_http() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up_insecure(1);
    let status = lab.status();
    assert_eq!(status["secure"], false, "{status}");
    assert!(status["coordinator_url"]
        .as_str()
        .unwrap_or_default()
        .starts_with("http://"));
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    assert!(!lab.cli_ok("node1", &["status"]).contains("expires"));
}
