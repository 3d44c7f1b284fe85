//! `shibafu cert` end to end in a scratch directory: a CA, certificates of each kind, what
//! `show` says, and the mistakes it refuses.

use clap::Parser;

use super::*;
use crate::args::{Cli, Command};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `shibafu cert ARGS`; its output or its error.
fn cert(args: &[&str]) -> Result<String, String> {
    let mut full = vec!["shibafu", "cert"];
    full.extend_from_slice(args);
    let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
    let Command::Cert { cmd } = cli.command else {
        panic!("not a cert command");
    };
    let mut out = Vec::new();
    run(cmd, &mut out).map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf8"))
}

#[test]
fn a_ca_and_a_certificate_of_each_kind() {
    let s = Scratch(std::env::temp_dir().join(format!("shibafu-cert-{}", std::process::id())));
    let dir = s.0.display().to_string();
    let made = cert(&["init", "--dir", &dir, "--days", "100"]).expect("init");
    assert!(made.contains("shibafu-ca (no role), expires"), "{made}");
    assert!(
        made.contains("(in 99 days)") || made.contains("(in 100 days)"),
        "{made}"
    );
    let again = cert(&["init", "--dir", &dir]).expect_err("the CA exists");
    assert!(again.contains("--force"), "{again}");

    let admin = cert(&["issue", "--for", "cli", "alice", "--dir", &dir]).expect("cli");
    assert!(admin.contains("alice (admin)"), "{admin}");
    let reader = cert(&[
        "issue",
        "--for",
        "cli",
        "grafana",
        "--read-only",
        "--dir",
        &dir,
    ]);
    assert!(reader.expect("read-only").contains("grafana (read-only)"));
    let agent = cert(&["issue", "--for", "agent", "node1", "--dir", &dir]).expect("agent");
    assert!(agent.contains("node1 (agent)"), "{agent}");
    let args = [
        "issue",
        "--for",
        "coordinator",
        "coordinator1",
        "--ip",
        "10.0.0.2",
    ];
    let mut with_dir = args.to_vec();
    with_dir.extend(["--dir", &dir, "--days", "10"]);
    let coord = cert(&with_dir).expect("coordinator");
    assert!(
        coord.contains("renew it soon"),
        "10 days is near its end: {coord}"
    );

    let shown = cert(&[
        "show",
        &format!("{dir}/alice.pem"),
        &format!("{dir}/ca.pem"),
    ])
    .expect("show");
    assert_eq!(shown.lines().count(), 2, "{shown}");

    let by_name = cert(&["issue", "--for", "coordinator", "c2", "--dir", &dir]);
    assert!(
        by_name
            .expect("a server by its name alone")
            .contains("c2 (coordinator)"),
        "the issue's spelling works for servers too"
    );
    for (bad, says) in [
        (
            vec!["issue", "--for", "agent", "n2", "--ip", "10.0.0.9"],
            "are for servers",
        ),
        (
            vec!["issue", "--for", "agent", "n2", "--read-only"],
            "--read-only is for --for cli",
        ),
        (
            vec!["issue", "--for", "agent", "Bad_Name"],
            "name \"Bad_Name\"",
        ),
        (vec!["issue", "--for", "root", "n2"], "invalid value 'root'"),
    ] {
        let mut full = bad.clone();
        full.extend(["--dir", &dir]);
        let e = cert(&full).expect_err(says);
        assert!(e.contains(says), "{bad:?}: {e}");
    }
    let elsewhere = s.0.join("none");
    let e = cert(&[
        "issue",
        "--for",
        "agent",
        "n3",
        "--dir",
        &elsewhere.display().to_string(),
    ])
    .expect_err("no CA there");
    assert!(e.contains("shibafu cert init --dir"), "{e}");
}

#[test]
fn summaries_warn_before_the_end_and_after_it() {
    let info = CertInfo {
        name: "node1".into(),
        role: Some(Role::Agent),
        not_after: 100 * 86_400,
        expires: "1970-04-11T00:00:00Z".into(),
    };
    assert_eq!(
        summary(&info, 0),
        "node1 (agent), expires 1970-04-11T00:00:00Z (in 100 days)"
    );
    assert!(summary(&info, 80 * 86_400).contains("in 20 days: renew it soon"));
    assert!(summary(&info, 100 * 86_400).contains("EXPIRED"));
}
