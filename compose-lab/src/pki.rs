//! The PKI of a secure lab (the default): a CA and a certificate for every etcd member, every
//! coordinator, every node's agent, an admin user (what `exec` gives the CLI and etcdctl) and a
//! read-only user, all made with the real `shibafu cert` commands as a user would, in
//! `<lab>/pki`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use shibafu_overlay::tls::TlsFiles;

use crate::components::Bins;
use crate::layout::{coordinator_name, Layout};

/// The certificate every etcd member serves and peers with.
pub const ETCD_CERT: &str = "etcd";
/// The admin user of the lab's CLI and etcdctl.
pub const ADMIN: &str = "admin";
/// A user who may read but not change the cluster.
pub const READER: &str = "reader";
/// Days the lab's certificates are valid.
const DAYS: &str = "90";

/// The files of holder `name` in `pki`.
pub fn files(pki: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{name}.pem")),
        key: pki.join(format!("{name}-key.pem")),
    }
}

/// The `--tls-ca`, `--tls-cert`, `--tls-key` flags for holder `name`.
pub fn flags(pki: &Path, name: &str) -> Vec<String> {
    let f = files(pki, name);
    vec![
        "--tls-ca".into(),
        f.ca.display().to_string(),
        "--tls-cert".into(),
        f.cert.display().to_string(),
        "--tls-key".into(),
        f.key.display().to_string(),
    ]
}

/// The admin's client configuration (readiness probes of the coordinators).
pub fn admin_client(pki: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(files(pki, ADMIN).client_config()?)
}

/// Makes the CA and every certificate of a lab with `coordinators` coordinators and `nodes`.
pub fn make(
    layout: &Layout,
    bins: &Bins,
    coordinators: usize,
    nodes: &[String],
) -> anyhow::Result<PathBuf> {
    let dir = layout.pki_dir();
    let d = dir.display().to_string();
    let ca_name = format!("shibafu-lab-{}", layout.name);
    cert(
        bins,
        &["init", "--dir", &d, "--name", &ca_name, "--days", DAYS],
    )?;
    let ctl = layout.ctl_addr().to_string();
    let etcd = ["--ip", &ctl, "--ip", "127.0.0.1"];
    issue(bins, &d, "etcd", ETCD_CERT, &etcd)?;
    for i in 0..coordinators {
        let addr = layout.coordinator_addr(i).to_string();
        issue(
            bins,
            &d,
            "coordinator",
            &coordinator_name(i),
            &["--ip", &addr],
        )?;
    }
    for n in nodes {
        issue(bins, &d, "agent", n, &[])?;
    }
    issue(bins, &d, "cli", ADMIN, &[])?;
    issue(bins, &d, "cli", READER, &["--read-only"])?;
    Ok(dir)
}

fn issue(bins: &Bins, dir: &str, holder: &str, name: &str, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["issue", "--for", holder, name, "--dir", dir, "--days", DAYS];
    args.extend_from_slice(extra);
    cert(bins, &args)
}

fn cert(bins: &Bins, args: &[&str]) -> anyhow::Result<()> {
    crate::procs::run_ok(Command::new(&bins.cli).arg("cert").args(args))
}
