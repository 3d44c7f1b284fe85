//! `shibafu-lab down`: remove every process, namespace, mount and file a lab made. Works from
//! the state file, then sweeps by name prefix and process mark, so it also cleans a lab whose
//! `up` crashed or whose state file is gone. Safe to run twice.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::layout::Layout;
use crate::netns;
use crate::procs;
use crate::state::LabState;

/// Order in which known components are stopped: agents first, then coordinators, etcd last.
fn stop_order(st: &LabState) -> Vec<&str> {
    let mut keys: Vec<&str> = st.nodes.iter().map(|n| n.name.as_str()).collect();
    keys.extend(st.coordinators.iter().map(|c| c.name.as_str()));
    // A state file written before coordinators had hosts of their own.
    keys.extend(["coordinator", "dns", "etcd"]);
    keys
}

/// Removes everything of the lab; returns the problems met (and keeps going past each).
pub fn teardown(layout: &Layout, st: Option<&LabState>) -> Vec<String> {
    let mut problems = Vec::new();
    // 1. The daemons we started, politely, so they can flush their logs.
    if let Some(st) = st {
        for key in stop_order(st) {
            if let Some(p) = st.procs.get(key) {
                if let Some(pid) = p.pid {
                    procs::stop(pid, &p.program, Duration::from_secs(3));
                }
            }
        }
    }
    // 2. Everything else living in the lab: processes in its namespaces (the lab's hosts and
    // any namespace pinned under its state directory, such as containers'), and processes
    // carrying the lab's mark.
    let mut namespaces: Vec<String> = st.map(|s| s.namespaces.clone()).unwrap_or_default();
    for ns in netns::list_with_prefix(&layout.prefix()) {
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    let pinned = netns::nsfs_mounts_under(&layout.dir);
    let ids: BTreeSet<netns::NsId> = namespaces
        .iter()
        .map(|n| netns::path(n))
        .chain(pinned.iter().cloned())
        .filter_map(|p| netns::ns_id(&p))
        .collect();
    let exempt = procs::ancestors();
    for round in 0..3 {
        let mut pids = netns::pids_in(&ids);
        pids.extend(procs::pids_with_mark(&layout.mark()));
        pids.retain(|p| !exempt.contains(p));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        tracing::info!(?pids, round, "killing lab processes");
        for pid in &pids {
            procs::signal(*pid, libc::SIGKILL);
        }
        if !procs::wait_gone(&pids, Duration::from_secs(3)) && round == 2 {
            problems.push(format!("processes {pids:?} survived SIGKILL"));
        }
    }
    // 3. Namespaces pinned under the state directory, then the lab's named namespaces.
    for m in &pinned {
        if let Err(e) = netns::unmount(m) {
            problems.push(format!("{e:#}"));
        }
    }
    for ns in namespaces.iter().rev() {
        if let Err(e) = netns::del(ns) {
            problems.push(format!("{e:#}"));
        }
    }
    // 4. Files: the state directory, and the configuration sockets of the nodes' userspace
    // WireGuard devices (their processes are gone; the sockets are not).
    for ns in &namespaces {
        let sock = Path::new("/var/run/wireguard")
            .join(format!("{}.sock", crate::layout::wg_ifname_of_ns(ns)));
        let _ = fs::remove_file(sock);
    }
    if layout.dir.exists() {
        if let Err(e) = fs::remove_dir_all(&layout.dir) {
            problems.push(format!("removing {}: {e}", layout.dir.display()));
        }
    }
    problems
}

/// Removes the lab's lock file and, when no other lab is left, the empty root directory.
pub fn remove_root_if_empty(root: &Path) {
    let _ = fs::remove_dir(root);
}
