//! The host side of the NetworkActor: attaches workloads to networks (IPAM, endpoint records,
//! veths), detaches them, and reconciles the kernel with the cluster state by diff. Plain async
//! code over small traits (dataplane, firewall, store publisher), so it is unit-tested with fakes.

pub mod book;
mod publish;
mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use shibafu_overlay::firewall::{Firewall, FirewallError, FirewallSpec};
use shibafu_overlay::ipam::{ipv6_for, Ipam, IpamError};
use shibafu_overlay::model::{self, Endpoint, Network};
use shibafu_overlay::netlink::{Dataplane, NetlinkError};
use shibafu_overlay::plan::{next_ifname, DesiredHost, PlanError};
use shibafu_overlay::state::ClusterState;
use tracing::{debug, info, warn};

use book::{Book, BookError, Entry, Iface};
pub use publish::{Publisher, StorePublisher};

/// Errors of attaching, detaching and reconciling.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A name that is not a DNS label.
    #[error(transparent)]
    Name(#[from] model::ModelError),
    /// The network does not exist.
    #[error("unknown network {0:?}; see `shibafu network ls`")]
    UnknownNetwork(String),
    /// The workload does not exist here.
    #[error("no container or attachment named {0:?} on this node; see `shibafu ps`")]
    UnknownWorkload(String),
    /// The name is taken.
    #[error(
        "name {name:?} is already used on network {network:?} (node {node}); pick another name"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// The network.
        network: String,
        /// The node that has it.
        node: String,
    },
    /// The same network twice, or attaching to a network the workload is already on.
    #[error("{name:?} is already attached to network {network:?}")]
    AlreadyAttached {
        /// The workload.
        name: String,
        /// The network.
        network: String,
    },
    /// A workload of that name exists with another namespace.
    #[error("{0:?} already exists on this node with another namespace; pick another name")]
    Exists(String),
    /// No network given.
    #[error("give at least one network")]
    NoNetwork,
    /// Address management refused.
    #[error("network {network:?}: {source}")]
    Ipam {
        /// The network.
        network: String,
        /// The IPAM error.
        source: IpamError,
    },
    /// The desired state could not be built.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The kernel could not be read.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Some ops failed.
    #[error("dataplane: {0}")]
    Apply(String),
    /// The firewall could not be applied.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// The local book could not be saved.
    #[error(transparent)]
    Book(#[from] BookError),
}

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
}

/// Writing an attach's endpoint records to the store.
pub type Publication = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A done attach: the workload's entry, and the publication of its new endpoint records.
pub struct Attached {
    /// The workload as the book now has it.
    pub entry: Entry,
    /// Puts the new endpoint records; the kernel side is already done.
    pub publish: Publication,
}

/// Fixed facts about this host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Node name.
    pub node: String,
    /// Underlay address (VTEP); `None` = single-host, no VXLAN.
    pub underlay: Option<IpAddr>,
    /// MTU of the underlay interface.
    pub underlay_mtu: u32,
    /// Keep bridged frames out of the netfilter hooks (`--no-bridge-netfilter`).
    pub bridge_netfilter_off: bool,
}

/// The host dataplane owner; see the module documentation.
pub struct Host {
    cfg: HostConfig,
    dp: Arc<dyn Dataplane>,
    fw: Arc<dyn Firewall>,
    ipam: Ipam,
    publisher: Arc<dyn Publisher>,
    book: Book,
    state: Arc<ClusterState>,
    firewall: Option<FirewallSpec>,
    /// The desired state of the last reconcile that applied cleanly.
    settled: Option<DesiredHost>,
}

impl Host {
    /// A host over its parts; call [`Host::restore`] before serving requests.
    pub fn new(
        cfg: HostConfig,
        dp: Arc<dyn Dataplane>,
        fw: Arc<dyn Firewall>,
        ipam: Ipam,
        publisher: Arc<dyn Publisher>,
        book: Book,
    ) -> Host {
        Host {
            cfg,
            dp,
            fw,
            ipam,
            publisher,
            book,
            state: Arc::new(ClusterState::new()),
            firewall: None,
            settled: None,
        }
    }

    /// The local workloads.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The networks of a workload's interfaces, in interface order (those still known).
    pub fn networks_of(&self, entry: &Entry) -> Vec<Network> {
        entry
            .interfaces
            .iter()
            .filter_map(|i| self.state.networks().get(&i.endpoint.network).cloned())
            .collect()
    }

    /// Takes a new cluster state (reconcile afterwards).
    pub fn set_state(&mut self, state: Arc<ClusterState>) {
        self.state = state;
    }

    fn network(&self, name: &str) -> Result<Network, HostError> {
        self.state
            .networks()
            .get(name)
            .cloned()
            .ok_or_else(|| HostError::UnknownNetwork(name.to_string()))
    }

    /// After a start: tells IPAM which addresses the book uses and publishes its endpoints again
    /// (under the new lease), so a restart changes nothing for running workloads.
    pub async fn restore(&mut self) {
        let mut used: std::collections::BTreeMap<String, Vec<Ipv4Addr>> = Default::default();
        for ep in self.book.endpoints() {
            used.entry(ep.network.clone()).or_default().push(ep.ipv4);
        }
        for (net, ips) in used {
            match self.network(&net) {
                Ok(n) => {
                    if let Err(e) = self.ipam.recover(&n, &ips).await {
                        warn!(network = %net, error = %e, "IPAM recovery failed");
                    }
                }
                Err(_) => {
                    warn!(network = %net, "local endpoints on a network that no longer exists")
                }
            }
        }
        let eps: Vec<Endpoint> = self.book.endpoints().cloned().collect();
        for ep in &eps {
            if let Err(e) = self.publisher.put(ep).await {
                warn!(network = %ep.network, endpoint = %ep.id, error = %e, "re-publishing endpoint failed; retried on reconnect");
            }
        }
        info!(
            workloads = self.book.entries().count(),
            endpoints = eps.len(),
            "local state restored"
        );
    }

    /// Attaches a workload to networks; on any failure nothing of it is left behind. The
    /// endpoint records are not in the store yet: await [`Attached::publish`] for that.
    pub async fn attach(&mut self, req: AttachRequest) -> Result<Attached, HostError> {
        debug!(name = %req.name, networks = ?req.networks, netns = %req.netns.display(), "attach");
        model::validate_name(&req.name)?;
        if req.networks.is_empty() {
            return Err(HostError::NoNetwork);
        }
        for a in &req.aliases {
            model::validate_name(a)?;
        }
        let existing = self.book.get(&req.name).cloned();
        if let Some(e) = &existing {
            if e.netns != req.netns {
                return Err(HostError::Exists(req.name.clone()));
            }
        }
        let mut seen: BTreeSet<&str> = existing
            .iter()
            .flat_map(|e| e.interfaces.iter().map(|i| i.endpoint.network.as_str()))
            .collect();
        let mut nets = Vec::new();
        for n in &req.networks {
            let net = self.network(n)?;
            if !seen.insert(n.as_str()) {
                return Err(HostError::AlreadyAttached {
                    name: req.name.clone(),
                    network: n.clone(),
                });
            }
            if let Some(other) = self.state.endpoints().get(&(n.clone(), req.name.clone())) {
                if other.node != self.cfg.node || existing.is_none() {
                    return Err(HostError::NameTaken {
                        name: req.name.clone(),
                        network: n.clone(),
                        node: other.node.clone(),
                    });
                }
            }
            nets.push(net);
        }
        let mut entry = existing.clone().unwrap_or(Entry {
            name: req.name.clone(),
            netns: req.netns.clone(),
            container: req.container,
            interfaces: vec![],
        });
        let mut new_eps = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let requested = if i == 0 { req.ip } else { None };
            match self.new_endpoint(net, &req, requested).await {
                Ok(ep) => new_eps.push(ep),
                Err(e) => {
                    self.release_all(&nets, &new_eps).await;
                    return Err(e);
                }
            }
        }
        for ep in &new_eps {
            let ifname = next_ifname(entry.interfaces.iter().map(|i| i.ifname.as_str()));
            entry.interfaces.push(Iface {
                ifname,
                endpoint: ep.clone(),
            });
        }
        self.book.insert(entry.clone());
        if let Err(e) = self.apply_attach(&entry.netns).await {
            self.rollback(existing, &nets, &new_eps).await;
            return Err(e);
        }
        info!(name = %req.name, networks = ?req.networks, "attached");
        Ok(Attached {
            entry,
            publish: self.publication(new_eps),
        })
    }

    /// Writes `eps` to the store (a failure is logged: the StoreActor writes owned keys again
    /// when etcd is back). A `'static` future, so the caller can answer before it completes.
    fn publication(&self, eps: Vec<Endpoint>) -> Publication {
        let publisher = self.publisher.clone();
        Box::pin(async move {
            for ep in &eps {
                if let Err(e) = publisher.put(ep).await {
                    warn!(network = %ep.network, endpoint = %ep.id, error = %e, "endpoint not published yet; retried on reconnect");
                }
            }
        })
    }

    /// This node's endpoints, as the book has them.
    pub fn local_endpoints(&self) -> Vec<Endpoint> {
        self.book.endpoints().cloned().collect()
    }

    async fn new_endpoint(
        &self,
        net: &Network,
        req: &AttachRequest,
        ip: Option<Ipv4Addr>,
    ) -> Result<Endpoint, HostError> {
        let ipam_err = |source| HostError::Ipam {
            network: net.name.clone(),
            source,
        };
        let ipv4 = self.ipam.allocate(net, ip).await.map_err(ipam_err)?;
        let ipv6 = match ipv6_for(net, ipv4) {
            Ok(v6) => v6,
            Err(e) => {
                let _ = self.ipam.release(net, ipv4).await;
                return Err(ipam_err(e));
            }
        };
        Ok(Endpoint {
            aliases: req.aliases.clone(),
            ipv6,
            service: req.service.clone(),
            port: req.port,
            ..Endpoint::new(&net.name, &req.name, &self.cfg.node, ipv4)
        })
    }

    async fn unpublish(&self, eps: &[Endpoint]) {
        for ep in eps {
            if let Err(e) = self.publisher.delete(&ep.network, &ep.id).await {
                warn!(network = %ep.network, endpoint = %ep.id, error = %e, "endpoint record not deleted");
            }
        }
    }

    async fn release_all(&self, nets: &[Network], eps: &[Endpoint]) {
        for ep in eps {
            if let Some(n) = nets.iter().find(|n| n.name == ep.network) {
                if let Err(e) = self.ipam.release(n, ep.ipv4).await {
                    warn!(network = %n.name, ip = %ep.ipv4, error = %e, "releasing address failed");
                }
            }
        }
    }

    async fn rollback(&mut self, previous: Option<Entry>, nets: &[Network], eps: &[Endpoint]) {
        let name = eps.first().map(|e| e.name.clone()).unwrap_or_default();
        let netns = match previous {
            Some(p) => {
                let netns = p.netns.clone();
                self.book.insert(p);
                netns
            }
            None => match self.book.remove(&name) {
                Some(e) => e.netns,
                None => return,
            },
        };
        if let Err(e) = self.apply_local(&netns).await {
            warn!(name = %name, error = %e, "undoing a failed attach left errors");
        }
        self.release_all(nets, eps).await;
    }

    /// Detaches a workload from one network, or from all when `network` is `None`; returns
    /// what it had. Every step is tried; the first error is reported.
    pub async fn detach(&mut self, name: &str, network: Option<&str>) -> Result<Entry, HostError> {
        let entry = self
            .book
            .get(name)
            .cloned()
            .ok_or_else(|| HostError::UnknownWorkload(name.to_string()))?;
        let (gone, kept): (Vec<Iface>, Vec<Iface>) = entry
            .interfaces
            .iter()
            .cloned()
            .partition(|i| network.is_none_or(|n| i.endpoint.network == n));
        if gone.is_empty() {
            return Err(HostError::UnknownWorkload(format!(
                "{name} on network {}",
                network.unwrap_or("")
            )));
        }
        if kept.is_empty() {
            self.book.remove(name);
        } else {
            self.book.insert(Entry {
                interfaces: kept,
                ..entry.clone()
            });
        }
        let result = self.apply_local(&entry.netns).await;
        let eps: Vec<Endpoint> = gone.iter().map(|i| i.endpoint.clone()).collect();
        self.unpublish(&eps).await;
        for i in &gone {
            let ep = &i.endpoint;
            if let Some(n) = self.state.networks().get(&ep.network) {
                if let Err(e) = self.ipam.release(n, ep.ipv4).await {
                    warn!(network = %ep.network, ip = %ep.ipv4, error = %e, "releasing address failed");
                }
            }
        }
        info!(name, network = network.unwrap_or("*"), "detached");
        result.map(|()| entry)
    }
}

impl HostError {
    /// The API error for this failure (the message is the user's, the kind sets the status).
    pub fn to_api(&self) -> shibafu_overlay::api::ApiError {
        use shibafu_overlay::api::{ApiError, ErrorKind};
        let kind = match self {
            HostError::Name(_) | HostError::NoNetwork => ErrorKind::Invalid,
            HostError::Ipam { source, .. } => match source {
                IpamError::Store(_) => ErrorKind::Unavailable,
                IpamError::AddressTaken { .. }
                | IpamError::Exhausted { .. }
                | IpamError::Contention { .. } => ErrorKind::Conflict,
                IpamError::OwnedByOtherNode { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Invalid,
            },
            HostError::UnknownNetwork(_) | HostError::UnknownWorkload(_) => ErrorKind::NotFound,
            HostError::NameTaken { .. }
            | HostError::AlreadyAttached { .. }
            | HostError::Exists(_) => ErrorKind::Duplicate,
            HostError::Plan(_)
            | HostError::Netlink(_)
            | HostError::Apply(_)
            | HostError::Firewall(_)
            | HostError::Book(_) => ErrorKind::Internal,
        };
        ApiError::new(kind, self.to_string())
    }
}
