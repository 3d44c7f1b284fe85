//! The dataplane reconciler: plans this host's bridges, VXLAN devices, veths, FDB and neighbour
//! entries from the cluster state and this node's workloads, and applies the difference. Plain
//! async code over the `Dataplane` trait (unit-tested with the fake); [`actor::DataplaneActor`]
//! owns it and tells the firewall owner and the cluster what it built.

pub mod actor;
mod inputs;
mod kernel;
mod local;
mod repairs;
mod reports;
mod splice;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shibafu_overlay::firewall::{
    planned_ports, ControlPlane, FirewallError, FirewallSpec, GuardPorts,
};
use shibafu_overlay::model::{Endpoint, Link, Network, Node};
use shibafu_overlay::netlink::watch::Damage;
use shibafu_overlay::netlink::{Dataplane, NetlinkError, Scope};
use shibafu_overlay::plan::{
    networks_in_use_by, plan_workloads, DesiredHost, HostInputs, HostMirror, LocalContainer,
    LocalInterface, PlanError, SkippedNetwork,
};
use shibafu_overlay::policy::policed_networks;
use shibafu_overlay::state::ClusterState;
use splice::Basis;
use tracing::debug;

use crate::registry::book::Entry;
use crate::registry::LocalWorkloads;

/// Errors of reconciling the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The desired state could not be built.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The kernel could not be read.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Some ops failed.
    #[error("dataplane: {0}")]
    Apply(String),
    /// No cluster state yet: applying now would take every network off the host.
    #[error("the dataplane has not read the cluster yet; retry in a moment")]
    NotReady,
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
    /// Encrypt every network (`--encrypt-all`).
    pub encrypt_all: bool,
    /// Name of the WireGuard device.
    pub tunnel_if: String,
    /// Control-plane services this node knows from its flags (etcd, its metrics), kept off
    /// containers with the cluster's nodes and coordinators.
    pub control: Vec<SocketAddr>,
}

/// The reconciler; see the module documentation.
pub struct Reconciler {
    cfg: HostConfig,
    dp: Arc<dyn Dataplane>,
    state: Arc<ClusterState>,
    local: Arc<LocalWorkloads>,
    /// The desired state of the last reconcile that applied cleanly, and what it was planned
    /// from.
    settled: Option<(Arc<DesiredHost>, Basis)>,
    /// The desired state last planned, applied cleanly or not.
    planned: Option<Arc<DesiredHost>>,
    /// The source guard's ports of `planned`, once built (an attach's splice edits them).
    ports: OnceCell<GuardPorts>,
    /// What the last plan was made from.
    basis: Option<Basis>,
    /// Netlink ops applied and failed since start.
    ops: (u64, u64),
    /// This node's tunnel address while its WireGuard device is up.
    tunnel: Option<Ipv4Addr>,
    /// Bumped whenever something [`Reconciler::firewall_part`] reads changes.
    firewall_inputs: u64,
    /// The host side as the kernel holds it, while known without reading it.
    mirror: HostMirror,
}

impl Reconciler {
    /// A reconciler holding `local` (this node's workloads as the book has them) and an empty
    /// cluster until [`Reconciler::set_state`].
    pub fn new(cfg: HostConfig, dp: Arc<dyn Dataplane>, local: Arc<LocalWorkloads>) -> Self {
        Reconciler {
            cfg,
            dp,
            state: Arc::new(ClusterState::new()),
            local,
            settled: None,
            planned: None,
            ports: OnceCell::new(),
            basis: None,
            ops: (0, 0),
            tunnel: None,
            firewall_inputs: 0,
            mirror: HostMirror::default(),
        }
    }

    /// Netlink ops applied and failed since start.
    pub fn op_counts(&self) -> (u64, u64) {
        self.ops
    }

    /// Takes a new cluster state (reconcile afterwards).
    pub fn set_state(&mut self, state: Arc<ClusterState>) {
        if inputs::firewall_inputs_differ(&self.state, &state) {
            self.firewall_inputs += 1;
        }
        self.state = state;
    }

    /// Takes whether this node's WireGuard device is up, with its tunnel address (reconcile
    /// afterwards).
    pub fn set_tunnel(&mut self, tunnel: Option<Ipv4Addr>) {
        self.tunnel = tunnel;
        self.firewall_inputs += 1;
    }

    /// Takes this node's workloads as they should now be (reconcile afterwards).
    pub fn set_local(&mut self, local: Arc<LocalWorkloads>) {
        self.local = local;
    }

    /// The networks the last plan skipped, with the reasons.
    pub fn skipped(&self) -> &[SkippedNetwork] {
        self.planned.as_ref().map_or(&[], |d| &d.skipped)
    }

    /// Remembers `planned` as the last plan.
    fn set_planned(&mut self, planned: Option<Arc<DesiredHost>>) {
        self.planned = planned;
        self.ports = OnceCell::new();
        self.firewall_inputs += 1;
    }

    /// Changes whenever the inputs of [`Reconciler::firewall_part`] may have: the same value
    /// means the same part, so it need not be built again.
    pub fn firewall_inputs(&self) -> u64 {
        self.firewall_inputs
    }

    /// The firewall part for the valid networks of the last plan, built here or idle (their
    /// subnets stay out of reach by any other path, masquerade included); `None` before any plan.
    pub fn firewall_part(&self) -> Option<Result<FirewallSpec, FirewallError>> {
        let planned = self.planned.as_ref()?;
        let networks: Vec<Network> = self
            .state
            .networks()
            .values()
            .filter(|n| {
                planned.network(&n.name).is_some() || planned.idle.binary_search(&n.name).is_ok()
            })
            .cloned()
            .collect();
        let links: Vec<Link> = self.state.links().values().cloned().collect();
        let sealed: Vec<u32> = match self.cfg.underlay {
            Some(_) => networks
                .iter()
                .filter(|n| n.encrypted || self.cfg.encrypt_all)
                .map(|n| n.vni)
                .collect(),
            None => Vec::new(),
        };
        Some(
            FirewallSpec::from_model(&networks, &links, None).map(|mut spec| {
                spec.sealed_vnis = sealed;
                spec.sealed_vnis.sort_unstable();
                spec.tunnel_if = self.tunnel.map(|_| self.cfg.tunnel_if.clone());
                let inside = planned
                    .networks
                    .iter()
                    .any(|n| n.vxlan.as_ref().is_some_and(|v| v.local.is_none()));
                spec.tunnel_range = inside.then(shibafu_overlay::wireguard::tunnel::tunnel_range);
                spec.control = self.control_plane();
                spec.ports = self.ports.get_or_init(|| planned_ports(planned)).clone();
                spec
            }),
        )
    }

    /// The control plane containers must not reach: every node's underlay, the coordinators'
    /// APIs (from their registrations) and what the flags name (etcd, the metrics listener).
    fn control_plane(&self) -> ControlPlane {
        let coordinators: Vec<SocketAddr> = self
            .state
            .coordinators()
            .values()
            .filter_map(|c| ControlPlane::url_addr(&c.api))
            .collect();
        let known = self.cfg.control.iter().chain(&coordinators);
        let nodes = self.state.nodes().values().map(|n| n.underlay);
        ControlPlane::new(
            nodes.chain(known.clone().map(SocketAddr::ip)),
            known.map(SocketAddr::port),
        )
    }

    /// What the kernel lacks for this node's workloads in `netns` (their veths, addresses, default
    /// routes, bridge ports), as the ops a reconcile would apply; nothing is changed. Extra
    /// routes and addresses others added are not differences.
    pub async fn check_local(&self, netns: &Path) -> Result<Vec<String>, DataplaneError> {
        let (desired, _) = self.desired()?;
        let scope = Scope::Workloads(vec![netns.to_path_buf()]);
        let observed = self.dp.observe(&desired, &scope).await?;
        Ok(plan_workloads(&desired, &observed)
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Reconciles the host side after a cluster change. A change that concerns no network built
    /// here is not even planned; when the desired state is the one the last clean reconcile
    /// applied (the watch echoing this node's own endpoints, say) the kernel is not read at
    /// all; drift made by others is the periodic full resync's job. Returns whether the plan
    /// was compared with the kernel (read, or as kept in memory since the last read).
    pub async fn reconcile_change(&mut self) -> Result<bool, DataplaneError> {
        if self.settled_covers_change() {
            debug!("cluster change concerns no network built here");
            return Ok(false);
        }
        let desired = self.plan()?;
        if let (Some((settled, was)), Some(basis)) = (self.settled.as_mut(), &self.basis) {
            if *settled == desired {
                // The settled plan is as much these inputs' plan: an attach may splice into it.
                *was = basis.clone();
                debug!("cluster change leaves the desired dataplane as it is");
                return Ok(false);
            }
        }
        self.reconcile_to(desired, Scope::Only(vec![])).await?;
        Ok(true)
    }

    /// Repairs what the kernel reported gone: the host side, plus the namespaces of the local
    /// workloads whose host veth was deleted (with the veth went their interface). Returns how
    /// many ops it applied (none when the deletion was the agent's own, a detach say).
    pub async fn repair(&mut self, damage: &[Damage]) -> Result<u64, DataplaneError> {
        let before = self.ops.0;
        // Whatever went, the kernel must be read.
        self.mirror.forget();
        let desired = self.plan()?;
        if damage.contains(&Damage::Lost) {
            self.reconcile_to(desired, Scope::All).await?;
            return Ok(self.ops.0 - before);
        }
        let netns: Vec<PathBuf> = desired
            .endpoints
            .iter()
            .filter(|e| damage.contains(&Damage::Link(e.host_ifname.clone())))
            .map(|e| e.netns.clone())
            .collect();
        self.reconcile_to(desired, Scope::Only(netns)).await?;
        Ok(self.ops.0 - before)
    }

    /// Reconciles everything: the host side and every container namespace.
    pub async fn resync(&mut self) -> Result<(), DataplaneError> {
        let desired = self.plan()?;
        self.reconcile_to(desired, Scope::All).await
    }

    /// Plans the desired state and remembers it, with what it was planned from.
    fn plan(&mut self) -> Result<Arc<DesiredHost>, PlanError> {
        let (desired, basis) = self.desired()?;
        let desired = Arc::new(desired);
        self.set_planned(Some(desired.clone()));
        self.basis = Some(basis);
        Ok(desired)
    }

    fn desired(&self) -> Result<(DesiredHost, Basis), PlanError> {
        let containers = local_containers(self.local.values());
        let on = on_networks(&self.local);
        let in_use = self.in_use(&on);
        // Only the endpoints of networks built here are read: 200 of 10,000, say.
        let mut endpoints: Vec<Endpoint> = in_use
            .iter()
            .flat_map(|n| self.state.endpoints_of(n))
            .filter(|e| e.node != self.cfg.node)
            .cloned()
            .collect();
        endpoints.extend(self.local.values().flat_map(|e| e.endpoints().cloned()));
        let desired = self.build(&containers, &endpoints, &in_use)?;
        let basis = Basis {
            state: self.state.clone(),
            tunnel: self.tunnel,
            local: self.local.clone(),
            in_use: Arc::new(in_use),
            on: Arc::new(on),
        };
        Ok((desired, basis))
    }

    /// The networks this host builds when its workloads are on the networks `on`
    /// ([`shibafu_overlay::plan::networks_in_use`]).
    fn in_use(&self, on: &BTreeSet<String>) -> BTreeSet<String> {
        let on: BTreeSet<&str> = on.iter().map(String::as_str).collect();
        let networks: Vec<Network> = self.state.networks().values().cloned().collect();
        networks_in_use_by(
            &on,
            self.state.links().values(),
            self.state.policies().values(),
            &networks,
            self.state.endpoints().values(),
        )
    }

    /// The desired state of `containers` with `endpoints` (the local ones and the remote ones
    /// of the networks in use), building the networks in `in_use`.
    fn build(
        &self,
        containers: &[LocalContainer],
        endpoints: &[Endpoint],
        in_use: &BTreeSet<String>,
    ) -> Result<DesiredHost, PlanError> {
        let networks: Vec<Network> = self.state.networks().values().cloned().collect();
        let nodes: Vec<Node> = self.state.nodes().values().cloned().collect();
        // A policy created or removed (or a network's isolation changed) flips only this.
        let policed = policed_networks(&networks, self.state.policies().values());
        let mut desired = DesiredHost::build(&HostInputs {
            node: &self.cfg.node,
            underlay: self.cfg.underlay,
            underlay_mtu: self.cfg.underlay_mtu,
            networks: &networks,
            nodes: &nodes,
            endpoints,
            containers,
            policed: &policed,
            in_use,
            tunnel: self.tunnel,
            encrypt_all: self.cfg.encrypt_all,
        })?;
        desired.bridge_netfilter_off = self.cfg.bridge_netfilter_off;
        Ok(desired)
    }
}

/// The networks `local` has endpoints on.
fn on_networks(local: &LocalWorkloads) -> BTreeSet<String> {
    let mut on = BTreeSet::new();
    add_networks(&mut on, local.values());
    on
}

/// Adds to `on` the networks `entries`' endpoints are on.
fn add_networks<'a>(on: &mut BTreeSet<String>, entries: impl Iterator<Item = &'a Entry>) {
    for ep in entries.flat_map(Entry::endpoints) {
        if !on.contains(ep.network.as_str()) {
            on.insert(ep.network.clone());
        }
    }
}

/// The planner's view of local workloads: each one's namespace and interfaces.
fn local_containers<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<LocalContainer> {
    entries
        .map(|e| LocalContainer {
            netns: e.netns.clone(),
            interfaces: e
                .interfaces
                .iter()
                .map(|i| LocalInterface {
                    network: i.endpoint.network.clone(),
                    endpoint_id: i.endpoint.id.clone(),
                    ifname: i.ifname.clone(),
                })
                .collect(),
        })
        .collect()
}
