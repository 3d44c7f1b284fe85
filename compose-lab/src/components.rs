//! The lab's daemons: where their binaries are and the exact command line of each (etcd, the
//! coordinators, the upstream DNS server, one agent per node).

use shibafu_overlay::telemetry::LOG_ENV;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::layout::{
    etcd_name, etcd_port, Layout, ETCD_CLIENT_PORT, ETCD_METRICS_PORT, ETCD_PEER_PORT,
};
use crate::pki;
use crate::state::ProcSpec;

/// Lease TTL (seconds) the lab's agents and coordinators register with: a stopped one
/// disappears this fast.
pub const LAB_LEASE_TTL: u32 = 5;

/// Binaries the lab runs.
#[derive(Debug, Clone)]
pub struct Bins {
    /// Directory of the shibafu binaries (put first on PATH for `exec`).
    pub dir: PathBuf,
    /// `shibafu-agent`.
    pub agent: PathBuf,
    /// `shibafu-coordinator`.
    pub coordinator: PathBuf,
    /// `shibafu` (the CLI).
    pub cli: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
}

impl Bins {
    /// Finds the binaries: shibafu's in `SHIBAFU_BIN_DIR` or beside this program, etcd in
    /// `SHIBAFU_ETCD` or on PATH.
    pub fn find() -> anyhow::Result<Bins> {
        let dir = match std::env::var_os("SHIBAFU_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => std::env::current_exe()
                .context("locating shibafu-lab")?
                .parent()
                .context("shibafu-lab has no parent directory")?
                .to_path_buf(),
        };
        let need = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            anyhow::ensure!(
                p.is_file(),
                "{} not found: build it (`cargo build --workspace --bins`) or set SHIBAFU_BIN_DIR",
                p.display()
            );
            Ok(p)
        };
        let etcd = match std::env::var_os("SHIBAFU_ETCD") {
            Some(p) => PathBuf::from(p),
            None => on_path("etcd").context(
                "etcd not found on PATH: run deploy/install-deps.sh (Debian package etcd-server)",
            )?,
        };
        Ok(Bins {
            agent: need("shibafu-agent")?,
            coordinator: need("shibafu-coordinator")?,
            cli: need("shibafu")?,
            etcd,
            dir,
        })
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The log filter lab processes get: the lab's own `SHIBAFU_LOG` or `RUST_LOG`, else `info`.
fn log_filter() -> String {
    [LOG_ENV, "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .unwrap_or_else(|| "info".into())
}

fn proc(
    layout: &Layout,
    netns: String,
    program: &Path,
    component: &str,
    args: Vec<String>,
) -> ProcSpec {
    ProcSpec {
        netns,
        program: program.to_path_buf(),
        args,
        env: vec![(LOG_ENV.into(), log_filter())],
        log: layout.log_file(component),
        pid: None,
    }
}

/// etcd member `i` (0-based) of `layout.etcd_members`, on the control host: clients on the
/// underlay and loopback, peers on loopback only, `/health` in plain HTTP on loopback; a single
/// member is named `ctl` in the etcd cluster (as it always was), members of several
/// `etcd1`..`etcdN`. In a secure lab clients and peers speak TLS and must show a certificate of
/// the lab's CA.
pub fn etcd(layout: &Layout, bins: &Bins, i: usize) -> ProcSpec {
    let n = layout.etcd_members;
    let ctl = layout.ctl_addr();
    let member = |j: usize| {
        if n == 1 {
            "ctl".to_string()
        } else {
            etcd_name(j, n)
        }
    };
    let scheme = layout.scheme();
    let peer = |j: usize| format!("{scheme}://127.0.0.1:{}", etcd_port(ETCD_PEER_PORT, j));
    let client = etcd_port(ETCD_CLIENT_PORT, i);
    let cluster: Vec<String> = (0..n)
        .map(|j| format!("{}={}", member(j), peer(j)))
        .collect();
    let data = if n == 1 {
        "etcd".to_string()
    } else {
        etcd_name(i, n)
    };
    let mut args = vec![
        "--name".into(),
        member(i),
        "--data-dir".into(),
        layout.dir.join(data).display().to_string(),
        "--listen-client-urls".into(),
        format!("{scheme}://{ctl}:{client},{scheme}://127.0.0.1:{client}"),
        "--listen-metrics-urls".into(),
        etcd_health_url(i),
        "--advertise-client-urls".into(),
        layout.etcd_member_url(i),
        "--listen-peer-urls".into(),
        peer(i),
        "--initial-advertise-peer-urls".into(),
        peer(i),
        "--initial-cluster".into(),
        cluster.join(","),
        "--initial-cluster-token".into(),
        format!("shibafu-lab-{}", layout.name),
    ];
    if layout.secure {
        let f = pki::files(&layout.pki_dir(), pki::ETCD_CERT);
        let (ca, cert, key) = (
            f.ca.display().to_string(),
            f.cert.display().to_string(),
            f.key.display().to_string(),
        );
        for (flag, value) in [
            ("--cert-file", &cert),
            ("--key-file", &key),
            ("--trusted-ca-file", &ca),
            ("--peer-cert-file", &cert),
            ("--peer-key-file", &key),
            ("--peer-trusted-ca-file", &ca),
        ] {
            args.extend([flag.to_string(), value.clone()]);
        }
        args.extend([
            "--client-cert-auth".into(),
            "--peer-client-cert-auth".into(),
        ]);
    }
    proc(layout, layout.ctl_ns(), &bins.etcd, &etcd_name(i, n), args)
}

/// Where etcd member `i` serves `/health` in plain HTTP (loopback of the control host).
pub fn etcd_health_url(i: usize) -> String {
    format!("http://127.0.0.1:{}", etcd_port(ETCD_METRICS_PORT, i))
}

/// Coordinator `i` (0-based) on its own host: the API on port 7480 (TLS in a secure lab), the
/// cluster's DNS on port 53 and `/metrics` on port 9480 of its underlay address, registered as
/// `coordinator<i+1>` under a 5 s lease.
pub fn coordinator(layout: &Layout, bins: &Bins, i: usize) -> ProcSpec {
    let name = crate::layout::coordinator_name(i);
    let addr = layout.coordinator_addr(i);
    let mut args = vec![
        "--name".into(),
        name.clone(),
        "--listen".into(),
        format!("{addr}:{}", crate::layout::COORDINATOR_PORT),
        "--dns-listen".into(),
        layout.coordinator_dns(i),
        "--etcd".into(),
        layout.etcd_endpoints(),
        "--lease-ttl".into(),
        LAB_LEASE_TTL.to_string(),
        METRICS_FLAG.into(),
        format!("{addr}:{}", crate::layout::METRICS_PORT),
    ];
    if layout.secure {
        args.extend(pki::flags(&layout.pki_dir(), &name));
    }
    proc(
        layout,
        layout.node_ns(&name),
        &bins.coordinator,
        &name,
        args,
    )
}

/// The upstream ("external") DNS server on the control host: shibafu's own engine, standalone.
pub fn upstream_dns(layout: &Layout, bins: &Bins, zones: &[String]) -> ProcSpec {
    let mut args = vec![
        "dns".into(),
        "--listen".into(),
        layout.dns_addr(),
        "--records".into(),
        records_path(layout).display().to_string(),
    ];
    for z in zones {
        args.extend(["--zone".into(), z.clone()]);
    }
    proc(layout, layout.ctl_ns(), &bins.agent, "dns", args)
}

/// Records file of the upstream DNS server.
pub fn records_path(layout: &Layout) -> PathBuf {
    layout.dir.join("upstream.records")
}

/// The flag turning `/metrics` on, in the agent's and coordinator's arguments.
pub const METRICS_FLAG: &str = "--metrics-listen";

/// The `/metrics` URL of a process started with `args`, when they turn it on.
pub fn metrics_url(args: &[String]) -> Option<String> {
    let at = args.iter().position(|a| a == METRICS_FLAG)?;
    args.get(at + 1)
        .map(|addr| format!("http://{addr}/metrics"))
}

/// The agent of node `node` (0-based index `i`), serving `/metrics` on its underlay address.
pub fn agent(layout: &Layout, bins: &Bins, node: &str, i: usize) -> ProcSpec {
    let mut args = vec![
        "run".into(),
        "--node".into(),
        node.into(),
        "--etcd".into(),
        layout.etcd_endpoints(),
        "--underlay".into(),
        layout.node_addr(i).to_string(),
        "--state-dir".into(),
        layout.node_dir(node).display().to_string(),
        "--api-socket".into(),
        layout.api_socket(node).display().to_string(),
        "--upstream-dns".into(),
        layout.dns_addr(),
        "--lease-ttl".into(),
        LAB_LEASE_TTL.to_string(),
        // Lab nodes are namespaces dedicated to shibafu.
        "--no-bridge-netfilter".into(),
        "--wg-interface".into(),
        layout.wg_ifname(node),
        METRICS_FLAG.into(),
        format!("{}:{}", layout.node_addr(i), crate::layout::METRICS_PORT),
    ];
    if layout.secure {
        args.extend(pki::flags(&layout.pki_dir(), node));
    }
    proc(layout, layout.node_ns(node), &bins.agent, node, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_url_comes_from_the_flag_given() {
        let args: Vec<String> = ["run", "--metrics-listen", "10.99.0.11:9480", "--node", "n"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            metrics_url(&args).as_deref(),
            Some("http://10.99.0.11:9480/metrics")
        );
        assert_eq!(metrics_url(&args[..1]), None);
        assert_eq!(metrics_url(&args[..2]), None);
    }
}
