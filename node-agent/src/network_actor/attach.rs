//! The attach and detach sequences over the owners' interfaces (recipients), so they are
//! tested with the real owners over fakes.
//!
//! Attach: validate, allocate addresses, stage the workload in the registry (the book is written
//! while the kernel work runs), apply it to its namespace, then commit (announced and published).
//! Any failure before the commit undoes every step: nothing was announced or published yet.
//! Detach is the reverse: remove from the registry (unpublished at once), apply, free addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use actix::{Addr, Recipient};
use shibafu_overlay::ipam::{ipv6_for, Ipam};
use shibafu_overlay::model::{self, Endpoint, HealthSpec, Network};
use shibafu_overlay::plan::{next_ifname, valid_ifname};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::Store;
use shibafu_overlay::telemetry::Trace;
use tracing::{debug, info, warn};

use super::AttachError;
use crate::dataplane::actor::ApplyLocal;
use crate::registry::actor::{
    Abort, Commit, GetWorkload, GetWorkloads, RegistryActor, Remove, Stage, Staged,
};
use crate::registry::book::{BookError, Entry, Iface};

/// What to attach: a workload (by name and namespace) to networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Workload name (DNS label).
    pub name: String,
    /// Its network namespace file.
    pub netns: PathBuf,
    /// True for containers this agent runs.
    pub container: bool,
    /// Networks, in interface order.
    pub networks: Vec<String>,
    /// Fixed IPv4 address on the first network.
    pub ip: Option<Ipv4Addr>,
    /// Extra DNS names.
    pub aliases: Vec<String>,
    /// Service name.
    pub service: Option<String>,
    /// Service port.
    pub port: Option<u16>,
    /// Weight as a service instance (1-1000; 1 when not given).
    pub weight: Option<u32>,
    /// Health check of this instance, in place of its service's (or changes to it).
    pub health: HealthSpec,
    /// The request's trace: the attach continues it, and the endpoints record it.
    pub trace: Trace,
    /// Interface name inside the namespace (one network only); the next free `ethN` if absent.
    pub ifname: Option<String>,
    /// The container id of a CNI attachment.
    pub cni: Option<String>,
}

/// The owners an attach or detach goes through.
#[derive(Clone)]
pub struct Links {
    /// This node's name.
    pub node: String,
    /// Address management of this node.
    pub ipam: Ipam,
    /// The cluster store, for the services `run --service` names before they exist.
    pub store: Arc<dyn Store>,
    /// Registry: one committed workload.
    pub get: Recipient<GetWorkload>,
    /// Registry: every committed workload.
    pub get_all: Recipient<GetWorkloads>,
    /// Registry: stage.
    pub stage: Recipient<Stage>,
    /// Registry: abort a staged workload.
    pub abort: Recipient<Abort>,
    /// Registry: commit a staged workload.
    pub commit: Recipient<Commit>,
    /// Registry: remove.
    pub remove: Recipient<Remove>,
    /// Dataplane: apply local workloads to a namespace.
    pub apply: Recipient<ApplyLocal>,
}

impl Links {
    /// The links of node `node` to its IPAM, store, local registry and dataplane.
    pub fn new(
        node: &str,
        ipam: Ipam,
        store: Arc<dyn Store>,
        registry: &Addr<RegistryActor>,
        apply: Recipient<ApplyLocal>,
    ) -> Links {
        Links {
            node: node.to_string(),
            ipam,
            store,
            get: registry.clone().recipient(),
            get_all: registry.clone().recipient(),
            stage: registry.clone().recipient(),
            abort: registry.clone().recipient(),
            commit: registry.clone().recipient(),
            remove: registry.clone().recipient(),
            apply,
        }
    }
}

async fn saved(staged: Staged) -> Result<(), AttachError> {
    staged.saved.await.unwrap_or_else(|_| {
        Err(BookError::Io {
            path: "local.json".into(),
            source: std::io::Error::other("book writer stopped"),
        })
    })?;
    Ok(())
}

/// Attaches a workload to networks; on any failure nothing of it is left behind.
pub async fn attach(
    links: &Links,
    state: &ClusterState,
    req: AttachRequest,
) -> Result<Entry, AttachError> {
    debug!(name = %req.name, networks = ?req.networks, netns = %req.netns.display(), "attach");
    model::validate_name(&req.name)?;
    if req.networks.is_empty() {
        return Err(AttachError::NoNetwork);
    }
    for a in &req.aliases {
        model::validate_name(a)?;
    }
    if let Some(s) = &req.service {
        model::validate_name(s)?;
    }
    if let Some(w) = req.weight {
        model::validate_weight(w)?;
    }
    if let Some(ifname) = &req.ifname {
        check_ifname(ifname, req.networks.len())?;
    }
    let existing = links.get.send(GetWorkload(req.name.clone())).await?;
    if existing
        .as_ref()
        .is_some_and(|e| e.netns != req.netns || e.cni != req.cni)
    {
        return Err(AttachError::Exists(req.name.clone()));
    }
    if let (Some(e), Some(ifname)) = (&existing, &req.ifname) {
        if e.interfaces.iter().any(|i| &i.ifname == ifname) {
            return Err(AttachError::IfnameTaken {
                name: req.name.clone(),
                ifname: ifname.clone(),
            });
        }
    }
    let nets = networks_to_add(links, state, &req, existing.as_ref())?;
    let mut entry = existing.unwrap_or(Entry {
        name: req.name.clone(),
        netns: req.netns.clone(),
        container: req.container,
        interfaces: vec![],
        cni: req.cni.clone(),
    });
    let mut new_eps = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let requested = if i == 0 { req.ip } else { None };
        match new_endpoint(links, state, net, &req, requested).await {
            Ok(ep) => new_eps.push(ep),
            Err(e) => {
                release(&links.ipam, &nets, &new_eps).await;
                return Err(e);
            }
        }
    }
    for ep in &new_eps {
        let ifname = req
            .ifname
            .clone()
            .unwrap_or_else(|| next_ifname(entry.interfaces.iter().map(|i| i.ifname.as_str())));
        entry.interfaces.push(Iface {
            ifname,
            endpoint: ep.clone(),
        });
    }
    let staged = links.stage.send(Stage(entry.clone())).await?;
    let applied = links
        .apply
        .send(ApplyLocal {
            local: staged.effective.clone(),
            netns: entry.netns.clone(),
            attach: true,
            trace: Trace::current(),
        })
        .await
        .map_err(AttachError::from)
        .and_then(|r| r.map_err(AttachError::from));
    let done = applied.and(saved(staged).await);
    if let Err(e) = done {
        rollback(links, &entry, &nets, &new_eps).await;
        return Err(e);
    }
    links.commit.send(Commit(req.name.clone())).await?;
    info!(name = %req.name, networks = ?req.networks, "attached");
    Ok(entry)
}

/// A runtime-chosen interface name: what the kernel takes (1-15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`), for a single network.
fn check_ifname(ifname: &str, networks: usize) -> Result<(), AttachError> {
    if !valid_ifname(ifname) {
        return Err(AttachError::InvalidIfname(ifname.to_string()));
    }
    if networks != 1 {
        return Err(AttachError::InvalidIfname(format!(
            "{ifname} (an interface name is for one network, {networks} given)"
        )));
    }
    Ok(())
}

/// The networks `req` adds, checked: they exist and are built here, none twice, the name free
/// on each.
fn networks_to_add(
    links: &Links,
    state: &ClusterState,
    req: &AttachRequest,
    existing: Option<&Entry>,
) -> Result<Vec<Network>, AttachError> {
    let mut seen: BTreeSet<&str> = existing
        .iter()
        .flat_map(|e| e.interfaces.iter().map(|i| i.endpoint.network.as_str()))
        .collect();
    let mut nets = Vec::new();
    for n in &req.networks {
        let net = state
            .networks()
            .get(n)
            .cloned()
            .ok_or_else(|| AttachError::UnknownNetwork(n.clone()))?;
        if let Some(p) = state.problems().get(&(n.clone(), links.node.clone())) {
            return Err(AttachError::NotBuiltHere {
                network: n.clone(),
                reason: p.reason.clone(),
            });
        }
        if !seen.insert(n.as_str()) {
            return Err(AttachError::AlreadyAttached {
                name: req.name.clone(),
                network: n.clone(),
            });
        }
        if let Some(other) = state.endpoint(n, &req.name) {
            if other.node != links.node || existing.is_none() {
                return Err(AttachError::NameTaken {
                    name: req.name.clone(),
                    network: n.clone(),
                    node: other.node.clone(),
                });
            }
        }
        nets.push(net);
    }
    Ok(nets)
}

async fn new_endpoint(
    links: &Links,
    state: &ClusterState,
    net: &Network,
    req: &AttachRequest,
    ip: Option<Ipv4Addr>,
) -> Result<Endpoint, AttachError> {
    let ipam_err = |source| AttachError::Ipam {
        network: net.name.clone(),
        source,
    };
    let health = match &req.service {
        Some(s) => {
            let service = state.services().get(&(net.name.clone(), s.clone()));
            req.health
                .apply_to(service.and_then(|s| s.health.as_ref()))?
                .filter(|_| !req.health.is_empty())
        }
        None => None,
    };
    let ipv4 = links.ipam.allocate(net, ip).await.map_err(ipam_err)?;
    let ipv6 = match ipv6_for(net, ipv4) {
        Ok(v6) => v6,
        Err(e) => {
            let _ = links.ipam.release(net, ipv4).await;
            return Err(ipam_err(e));
        }
    };
    Ok(Endpoint {
        aliases: req.aliases.clone(),
        ipv6,
        service: req.service.clone(),
        port: req.port,
        weight: req.weight.unwrap_or(1),
        health,
        cni: req.cni.clone(),
        trace: Trace::current(),
        ..Endpoint::new(&net.name, &req.name, &links.node, ipv4)
    })
}

async fn release(ipam: &Ipam, nets: &[Network], eps: &[Endpoint]) {
    for ep in eps {
        if let Some(n) = nets.iter().find(|n| n.name == ep.network) {
            if let Err(e) = ipam.release(n, ep.ipv4).await {
                warn!(network = %n.name, ip = %ep.ipv4, error = %e, "releasing address failed");
            }
        }
    }
}

/// Undoes a staged attach: the registry forgets it, the namespace goes back to what the
/// committed workloads want, the addresses are freed.
async fn rollback(links: &Links, entry: &Entry, nets: &[Network], eps: &[Endpoint]) {
    match links.abort.send(Abort(entry.name.clone())).await {
        Ok(staged) => {
            let undo = links
                .apply
                .send(ApplyLocal {
                    local: staged.effective.clone(),
                    netns: entry.netns.clone(),
                    attach: false,
                    trace: Trace::current(),
                })
                .await;
            if !matches!(undo, Ok(Ok(()))) {
                warn!(name = %entry.name, "undoing a failed attach left errors; the next resync retries");
            }
            if let Err(e) = saved(staged).await {
                warn!(name = %entry.name, error = %e, "book not saved after undoing an attach");
            }
        }
        Err(e) => warn!(name = %entry.name, error = %e, "cannot undo a failed attach"),
    }
    release(&links.ipam, nets, eps).await;
}

/// Detaches a workload from one network, or from all when `network` is `None`; returns what it
/// had. Every step is tried; the first error is reported.
pub async fn detach(
    links: &Links,
    state: &ClusterState,
    name: &str,
    network: Option<&str>,
) -> Result<Entry, AttachError> {
    let r = links
        .remove
        .send(Remove {
            name: name.to_string(),
            network: network.map(str::to_string),
        })
        .await??;
    let applied = links
        .apply
        .send(ApplyLocal {
            local: r.effective.clone(),
            netns: r.removed.before.netns.clone(),
            attach: false,
            trace: Trace::current(),
        })
        .await
        .map_err(AttachError::from)
        .and_then(|r| r.map_err(AttachError::from));
    let written = saved(Staged {
        effective: r.effective,
        saved: r.saved,
    })
    .await;
    for i in &r.removed.gone {
        let ep = &i.endpoint;
        if let Some(n) = state.networks().get(&ep.network) {
            if let Err(e) = links.ipam.release(n, ep.ipv4).await {
                warn!(network = %ep.network, ip = %ep.ipv4, error = %e, "releasing address failed");
            }
        }
    }
    info!(name, network = network.unwrap_or("*"), "detached");
    applied.and(written).map(|()| r.removed.before)
}
