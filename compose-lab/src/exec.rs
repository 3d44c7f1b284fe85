//! `shibafu-lab exec NODE -- CMD...`: run a command inside a lab host with the CLI pointed at
//! that node's agent and at every coordinator.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use anyhow::Context;

use crate::components::Bins;
use crate::layout::{Layout, COORDINATOR_PREFIX};
use crate::state::LabState;

/// The namespace of an exec target: a node or a coordinator (`coordinator` alone: the first),
/// or `ctl` / `sw` for the control host and switch.
pub fn target_netns(layout: &Layout, st: &LabState, target: &str) -> anyhow::Result<String> {
    let coordinator = match target {
        COORDINATOR_PREFIX => st.coordinators.first(),
        name => st.coordinator(name),
    };
    if let Some(c) = coordinator {
        return Ok(c.netns.clone());
    }
    match target {
        "ctl" | "etcd" | "coordinator" | "dns" => Ok(layout.ctl_ns()),
        "sw" => Ok(layout.switch_ns()),
        node => Ok(st.node(node)?.netns.clone()),
    }
}

/// A command that runs `program args` inside `target`, with the lab's environment:
/// `SHIBAFU_COORDINATOR` (every coordinator URL, in order), `SHIBAFU_AGENT` (on nodes),
/// `SHIBAFU_NODE_AGENTS` (every node's agent), `SHIBAFU_LAB`, etcdctl's endpoint, in a secure
/// lab the admin certificate for both (`SHIBAFU_TLS_*`, `ETCDCTL_CACERT/CERT/KEY`), the lab's
/// own `OTEL_*` variables, and the shibafu binaries first on PATH.
pub fn command(
    layout: &Layout,
    bins: &Bins,
    st: &LabState,
    target: &str,
    program: impl AsRef<OsStr>,
    args: &[String],
) -> anyhow::Result<Command> {
    let ns_name = target_netns(layout, st, target)?;
    let ns = File::open(crate::netns::path(&ns_name))
        .with_context(|| format!("opening namespace {ns_name} (is the lab up?)"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("SHIBAFU_LAB", &layout.name)
        .env("SHIBAFU_COORDINATOR", st.coordinator_urls())
        .env("ETCDCTL_API", "3")
        .env("ETCDCTL_ENDPOINTS", st.etcd_endpoints());
    let agents: Vec<String> = st
        .nodes
        .iter()
        .map(|n| format!("{}=unix:{}", n.name, n.api_socket.display()))
        .collect();
    cmd.env("SHIBAFU_NODE_AGENTS", agents.join(","));
    if let Some(pki) = &st.pki {
        let admin = crate::pki::files(pki, crate::pki::ADMIN);
        cmd.env("SHIBAFU_TLS_CA", &admin.ca)
            .env("SHIBAFU_TLS_CERT", &admin.cert)
            .env("SHIBAFU_TLS_KEY", &admin.key)
            .env("ETCDCTL_CACERT", &admin.ca)
            .env("ETCDCTL_CERT", &admin.cert)
            .env("ETCDCTL_KEY", &admin.key);
    }
    if let Ok(node) = st.node(target) {
        cmd.env(
            "SHIBAFU_AGENT",
            format!("unix:{}", node.api_socket.display()),
        );
        cmd.env("SHIBAFU_NODE", &node.name);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bins.dir.clone()).chain(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).context("PATH")?);
    if let Some((k, v)) = layout.mark().split_once('=') {
        cmd.env(k, v);
    }
    cmd.envs(crate::procs::passed_env(std::env::vars()));
    // The descriptor is duplicated into the closure's owner; the File is moved in so it stays
    // open until the command is spawned (and closed on exec).
    let fd = ns.as_raw_fd();
    // SAFETY: only setns (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let _keep_open = &ns;
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs `argv` inside `target` with stdio attached; returns its exit code (128 + signal when
/// killed by a signal).
pub fn run(
    layout: &Layout,
    bins: &Bins,
    st: &LabState,
    target: &str,
    argv: &[String],
) -> anyhow::Result<i32> {
    let (program, args) = argv
        .split_first()
        .context("nothing to run: give a command after `--`")?;
    let status = command(layout, bins, st, target, program, args)?
        .status()
        .with_context(|| format!("running {program} in {target}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
