//! `shibafu-lab status`: what runs where, as a table or JSON.

use std::io::Write;

use serde::Serialize;

use crate::layout::Layout;
use crate::procs;
use crate::state::LabState;

/// One row of the status.
#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    /// Component (`etcd`, `coordinatorN`, `dns`, or a node name for its agent).
    pub name: String,
    /// Namespace it runs in.
    pub netns: String,
    /// Underlay address of its host.
    pub addr: String,
    /// Where a coordinator answers DNS, `ip:port` (coordinators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// Its `/metrics` URL (agents and coordinators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Pid, when running.
    pub pid: Option<u32>,
    /// Whether the process runs.
    pub running: bool,
    /// Whether the node's underlay link is cut.
    pub partitioned: bool,
}

/// The whole status.
#[derive(Debug, Serialize)]
pub struct LabStatus {
    /// Lab name.
    pub name: String,
    /// State directory.
    pub dir: String,
    /// Underlay subnet.
    pub subnet: String,
    /// etcd client URL (the first member's).
    pub etcd_url: String,
    /// Every etcd member's client URL, in order.
    pub etcd_urls: Vec<String>,
    /// The first coordinator's URL.
    pub coordinator_url: String,
    /// Every coordinator's URL, in order.
    pub coordinator_urls: Vec<String>,
    /// Upstream DNS server.
    pub dns_addr: String,
    /// Whether `up` finished.
    pub ready: bool,
    /// Whether etcd and the coordinators require certificates of the lab's CA.
    pub secure: bool,
    /// The lab's CA and certificates (`admin.pem`, `reader.pem`, one per component), when secure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pki: Option<String>,
    /// Components.
    pub components: Vec<ComponentStatus>,
    /// The `/metrics` URL of every agent and coordinator, reachable from the control host
    /// (`shibafu-lab exec ctl ...`) and from every node.
    pub metrics: Vec<String>,
}

/// Collects the status of a lab.
pub fn collect(layout: &Layout, st: &LabState) -> LabStatus {
    let ctl_addr = layout.ctl_addr().to_string();
    let components = st
        .procs
        .iter()
        .map(|(name, p)| {
            let node = st.nodes.iter().find(|n| &n.name == name);
            let coordinator = st.coordinator(name);
            let running = p.pid.is_some_and(|pid| procs::is_running(pid, &p.program));
            let addr = node
                .map(|n| n.addr.clone())
                .or_else(|| coordinator.map(|c| c.addr.clone()))
                .unwrap_or_else(|| ctl_addr.clone());
            ComponentStatus {
                name: name.clone(),
                netns: p.netns.clone(),
                addr,
                dns: coordinator.map(|c| c.dns.clone()),
                metrics: crate::components::metrics_url(&p.args),
                pid: p.pid.filter(|_| running),
                running,
                partitioned: node.is_some_and(|n| n.partitioned),
            }
        })
        .collect::<Vec<ComponentStatus>>();
    let metrics = components
        .iter()
        .filter_map(|c| c.metrics.clone())
        .collect();
    LabStatus {
        name: st.name.clone(),
        dir: layout.dir.display().to_string(),
        subnet: st.subnet.clone(),
        etcd_url: st.etcd_url.clone(),
        etcd_urls: st.etcd_endpoints().split(',').map(String::from).collect(),
        coordinator_url: st.coordinator_url.clone(),
        coordinator_urls: st.coordinator_urls().split(',').map(String::from).collect(),
        dns_addr: st.dns_addr.clone(),
        ready: st.ready,
        secure: st.pki.is_some(),
        pki: st.pki.as_ref().map(|p| p.display().to_string()),
        components,
        metrics,
    }
}

/// Prints the status as a table.
pub fn print_table(s: &LabStatus, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "lab {} ({}): underlay {}, state {}",
        s.name,
        if s.ready { "up" } else { "incomplete" },
        s.subnet,
        s.dir
    )?;
    writeln!(
        out,
        "etcd {}  coordinators {}  upstream dns {}",
        s.etcd_url,
        s.coordinator_urls.join(","),
        s.dns_addr
    )?;
    if !s.metrics.is_empty() {
        writeln!(out, "metrics {}", s.metrics.join(" "))?;
    }
    match &s.pki {
        Some(pki) => writeln!(
            out,
            "TLS with client certificates; CA and certificates in {pki}"
        )?,
        None => writeln!(out, "insecure: plain HTTP, no authentication")?,
    }
    writeln!(
        out,
        "{:<14} {:<22} {:<15} {:<8} STATE",
        "COMPONENT", "NAMESPACE", "ADDRESS", "PID"
    )?;
    for c in &s.components {
        let state = match (c.running, c.partitioned) {
            (true, false) => "running",
            (true, true) => "running, partitioned",
            (false, false) => "stopped",
            (false, true) => "stopped, partitioned",
        };
        let pid = c.pid.map_or("-".to_string(), |p| p.to_string());
        writeln!(
            out,
            "{:<14} {:<22} {:<15} {:<8} {state}",
            c.name, c.netns, c.addr, pid
        )?;
    }
    Ok(())
}
