//! Faults on demand: stop and start one component (a node's agent, etcd, a coordinator, the
//! upstream DNS), cut and restore a node's underlay link. Namespaces, containers and the
//! dataplane of a node are never touched. `coordinator` names every coordinator at once (what
//! it named when a lab had one, in the control host), `etcd` every member of a cluster of
//! several (`etcd1`..`etcdN` one of them).

use anyhow::{bail, Context};

use crate::layout::{Layout, COORDINATOR_PREFIX};
use crate::netns;
use crate::procs;
use crate::state::LabState;
use crate::up::{self, UPLINK};

/// Stops a component with SIGTERM (SIGKILL after a grace period); a stopped one stays stopped.
pub fn stop(layout: &Layout, st: &mut LabState, key: &str) -> anyhow::Result<()> {
    for key in resolve(st, key) {
        stop_one(layout, st, &key)?;
    }
    Ok(())
}

/// Starts a stopped component again with the same command line and waits until it answers;
/// of several (`coordinator`), those already running are left alone.
pub fn start(layout: &Layout, st: &mut LabState, key: &str) -> anyhow::Result<()> {
    let keys = resolve(st, key);
    let several = keys.len() > 1;
    for key in keys {
        if several && running(st, &key) {
            tracing::info!(component = %key, "already running");
            continue;
        }
        start_one(layout, st, &key)?;
    }
    Ok(())
}

fn running(st: &LabState, key: &str) -> bool {
    st.procs
        .get(key)
        .and_then(|p| p.pid.map(|pid| procs::is_running(pid, &p.program)))
        .unwrap_or(false)
}

/// The components `key` names: every coordinator for `coordinator` (when no component has that
/// name itself), else `key`.
fn resolve(st: &LabState, key: &str) -> Vec<String> {
    if key == COORDINATOR_PREFIX && !st.procs.contains_key(key) && !st.coordinators.is_empty() {
        return st.coordinators.iter().map(|c| c.name.clone()).collect();
    }
    if key == "etcd" && !st.procs.contains_key(key) {
        return st
            .procs
            .keys()
            .filter(|k| up::is_etcd(k))
            .cloned()
            .collect();
    }
    vec![key.to_string()]
}

fn stop_one(layout: &Layout, st: &mut LabState, key: &str) -> anyhow::Result<()> {
    let spec = component(st, key)?;
    match spec.pid {
        Some(pid) if procs::is_running(pid, &spec.program) => {
            procs::stop(pid, &spec.program, procs::STOP_GRACE);
            tracing::info!(component = key, pid, "stopped");
        }
        _ => tracing::info!(component = key, "already stopped"),
    }
    component_mut(st, key)?.pid = None;
    st.save(layout)
}

fn start_one(layout: &Layout, st: &mut LabState, key: &str) -> anyhow::Result<()> {
    let spec = component(st, key)?.clone();
    if let Some(pid) = spec.pid {
        if procs::is_running(pid, &spec.program) {
            bail!("{key} is already running (pid {pid}): stop it first with `shibafu-lab --name {} stop {key}`", layout.name);
        }
    }
    up::start(layout, st, key, spec)
}

/// Cuts a node off the underlay: the switch stops forwarding to and from it (its uplink goes to
/// macvlan `private` mode), while its own link stays up with its address and routes.
pub fn partition(layout: &Layout, st: &mut LabState, node: &str) -> anyhow::Result<()> {
    set_port(layout, st, node, false)
}

/// Restores a partitioned node's underlay link.
pub fn heal(layout: &Layout, st: &mut LabState, node: &str) -> anyhow::Result<()> {
    set_port(layout, st, node, true)
}

fn set_port(layout: &Layout, st: &mut LabState, node: &str, up: bool) -> anyhow::Result<()> {
    let ns = st.node(node)?.netns.clone();
    let mode = if up { "bridge" } else { "private" };
    netns::ip(
        &ns,
        &["link", "set", UPLINK, "type", "macvlan", "mode", mode],
    )?;
    if let Some(n) = st.nodes.iter_mut().find(|n| n.name == node) {
        n.partitioned = !up;
    }
    tracing::info!(node, mode, "underlay uplink set");
    st.save(layout)
}

fn component<'a>(st: &'a LabState, key: &str) -> anyhow::Result<&'a crate::state::ProcSpec> {
    st.procs.get(key).with_context(|| unknown(st, key))
}

fn component_mut<'a>(
    st: &'a mut LabState,
    key: &str,
) -> anyhow::Result<&'a mut crate::state::ProcSpec> {
    let msg = unknown(st, key);
    st.procs.get_mut(key).context(msg)
}

fn unknown(st: &LabState, key: &str) -> String {
    let keys: Vec<&str> = st.procs.keys().map(String::as_str).collect();
    format!(
        "lab {:?} has no component {key:?} (components: {})",
        st.name,
        keys.join(", ")
    )
}
