//! The agent's read-only diagnosis API: what only a node can see (inside a container's network
//! namespace, the host's bridges and VXLAN entries) and probes run from a container. The CLI's
//! `network routes`, `network diagnose` and `network dns-trace` call it on the node concerned.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::agent::{container_path, Agent, ContainerInfo};
use super::client::ClientError;
use crate::dns::trace::DnsTrace;
use crate::model::MacAddr;
use crate::plan::{ObservedFdb, ObservedLink, ObservedNeigh, ObservedPortFdb};

/// One route of a namespace's main table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Destination; `None` is the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpNet>,
    /// Next hop, when the destination is not on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Outgoing interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// One neighbour (ARP/ND) entry of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NeighbourEntry {
    /// Interface.
    pub dev: String,
    /// Address.
    pub ip: IpAddr,
    /// Link-layer address, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Kernel state: `reachable`, `stale`, `permanent`, `failed`, ...
    pub state: String,
}

/// Links (with addresses), main-table routes and neighbours of one network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceNet {
    /// Every link, loopback included.
    pub links: Vec<ObservedLink>,
    /// Main-table unicast routes, IPv4 then IPv6.
    pub routes: Vec<RouteEntry>,
    /// Neighbour entries, IPv4 then IPv6.
    pub neighbours: Vec<NeighbourEntry>,
}

/// Answer of `GET /v1/containers/{name}/net`: a container's network as its node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerNet {
    /// The node that runs the container.
    pub node: String,
    /// The container as `GET /v1/containers/{name}` reports it.
    pub container: ContainerInfo,
    /// Inside its namespace (empty when it cannot be entered).
    pub inside: NamespaceNet,
    /// Why the namespace could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The host ends of its veths (`peer_index` of an inside link is the `index` of one).
    pub host_side: Vec<ObservedLink>,
}

/// Answer of `GET /v1/diag/host`: the shibafu links of the node and what hangs off them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNet {
    /// The node.
    pub node: String,
    /// Its underlay address (the VTEP).
    pub underlay: IpAddr,
    /// Bridges, VXLAN devices and veth host ends (names starting with `sf`).
    pub links: Vec<ObservedLink>,
    /// VXLAN FDB entries: which VTEP each remote MAC is sent to.
    pub vxlan_fdb: Vec<ObservedFdb>,
    /// Static bridge FDB entries on VXLAN ports.
    pub bridge_fdb: Vec<ObservedPortFdb>,
    /// Permanent neighbour entries on the bridges (remote endpoints' addresses).
    pub neighbours: Vec<ObservedNeigh>,
}

/// What a probe sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A TCP connect.
    Tcp,
    /// A UDP datagram (an answer or silence passes; a port-unreachable fails).
    Udp,
    /// An ICMP echo.
    Icmp,
    /// A DNS query for `name` (type A, or AAAA for an IPv6 server) to the target's port.
    Dns,
}

/// Body of `POST /v1/containers/{name}/probe`: a connection attempt from inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Transport.
    pub kind: ProbeKind,
    /// Destination address.
    pub target: IpAddr,
    /// Destination port (ignored for ICMP).
    #[serde(default)]
    pub port: u16,
    /// How long to wait, in milliseconds (at most 10000).
    pub timeout_ms: u64,
    /// The name a DNS probe asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Answer of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Did the destination answer as the kind expects?
    pub ok: bool,
    /// What happened: `connected`, `echo reply`, `refused`, `timed out after 2000 ms`, ...
    pub detail: String,
    /// Time taken, in microseconds.
    pub micros: u64,
    /// The addresses a DNS probe got back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<IpAddr>,
}

/// Body of `POST /v1/diag/dns-trace`: trace a query through a network's server on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsTraceRequest {
    /// The network whose server answers.
    pub network: String,
    /// The name to ask.
    pub query: String,
    /// Record type (`A`, `AAAA`, `SRV`, `PTR`, ...).
    #[serde(rename = "type")]
    pub qtype: String,
    /// The requester whose view applies: a container's address, or the gateway for the node's.
    pub client: IpAddr,
}

/// Longest probe the agent runs.
pub const MAX_PROBE_MS: u64 = 10_000;

impl Agent {
    /// `GET /v1/containers/{name}/net`: addresses, routes and neighbours inside the container
    /// and the host ends of its interfaces.
    pub async fn container_net(&self, name: &str) -> Result<ContainerNet, ClientError> {
        self.client()
            .get(&format!("{}/net", container_path(name)))
            .await
    }

    /// `GET /v1/diag/host`: the node's bridges, VXLAN devices, FDB and neighbour entries.
    pub async fn host_net(&self) -> Result<HostNet, ClientError> {
        self.client().get("/v1/diag/host").await
    }

    /// `POST /v1/containers/{name}/probe`: a probe from inside the container.
    pub async fn probe(&self, name: &str, req: &ProbeRequest) -> Result<ProbeResult, ClientError> {
        self.client()
            .post(&format!("{}/probe", container_path(name)), req)
            .await
    }

    /// `POST /v1/diag/dns-trace`: how the network's server on this node answers a query.
    pub async fn dns_trace(&self, req: &DnsTraceRequest) -> Result<DnsTrace, ClientError> {
        self.client().post("/v1/diag/dns-trace", req).await
    }

    /// `POST /v1/diag/probe`: a probe from the node itself (its underlay).
    pub async fn host_probe(&self, req: &ProbeRequest) -> Result<ProbeResult, ClientError> {
        self.client().post("/v1/diag/probe", req).await
    }
}
