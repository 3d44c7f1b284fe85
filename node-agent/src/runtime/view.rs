//! The API view of this node's containers and attachments: a container from the owner's table
//! joined with its workload entry (its interfaces), or a namespace attached from elsewhere from
//! its entry alone.

use std::collections::BTreeSet;

use shibafu_overlay::api::{ContainerInfo, InterfaceInfo};

use super::table::{Container, Phase, Table};
use crate::registry::book::Entry;
use crate::registry::LocalWorkloads;

/// The interfaces of a workload entry, eth0 first (none without an entry).
fn interfaces(entry: Option<&Entry>) -> Vec<InterfaceInfo> {
    entry
        .map(|e| {
            e.interfaces
                .iter()
                .map(|i| InterfaceInfo {
                    network: i.endpoint.network.clone(),
                    ifname: i.ifname.clone(),
                    ipv4: i.endpoint.ipv4,
                    ipv6: i.endpoint.ipv6,
                    mac: i.endpoint.mac,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A namespace attached from elsewhere: state `attached`, no command, its interfaces.
pub fn attached_info(entry: &Entry) -> ContainerInfo {
    ContainerInfo {
        name: entry.name.clone(),
        state: "attached".into(),
        pid: None,
        exit_code: None,
        command: vec![],
        netns: entry.netns.display().to_string(),
        interfaces: interfaces(Some(entry)),
        cni: entry.cni.clone(),
    }
}

/// A container: its state (`created` while starting), pid while running, exit code once exited,
/// and the interfaces of its entry.
pub fn container_info(name: &str, c: &Container, entry: Option<&Entry>) -> ContainerInfo {
    let (state, pid, exit_code) = match c.phase {
        Phase::Starting | Phase::Created => ("created", None, None),
        Phase::Running(pid) => ("running", Some(pid), None),
        Phase::Exited(code) => ("exited", None, Some(code)),
    };
    ContainerInfo {
        name: name.to_string(),
        state: state.into(),
        pid,
        exit_code,
        command: c.command.clone(),
        netns: c.netns.display().to_string(),
        interfaces: interfaces(entry),
        cni: None,
    }
}

/// The container or attachment `name`, if this node has it.
pub fn lookup(table: &Table, local: &LocalWorkloads, name: &str) -> Option<ContainerInfo> {
    match table.get(name) {
        Some(c) => Some(container_info(name, c, local.get(name))),
        None => local.get(name).map(attached_info),
    }
}

/// Every container and attachment of this node, by name.
pub fn list(table: &Table, local: &LocalWorkloads) -> Vec<ContainerInfo> {
    let names: BTreeSet<&String> = table.iter().map(|(n, _)| n).chain(local.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| lookup(table, local, n))
        .collect()
}
