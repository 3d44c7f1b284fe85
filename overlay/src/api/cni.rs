//! The agent's CNI endpoints (`/v1/cni/...`), which `shibafu-cni` calls for a container runtime:
//! bodies and typed calls. An attachment made this way is keyed by the runtime's
//! (container id, interface name), as the CNI spec keys it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::client::ClientError;
use crate::model::MacAddr;

/// Body of `POST /v1/cni/add`: attach the runtime's namespace to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniAdd {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`: the interface to create inside the namespace.
    pub ifname: String,
    /// `CNI_NETNS`: a bind-mounted namespace file or `/proc/PID/ns/net`.
    pub netns: String,
    /// The shibafu network.
    pub network: String,
    /// DNS name of the attachment.
    pub name: String,
    /// Extra DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Service this attachment is an instance of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weight as a service instance (1-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// One CNI attachment as the runtime names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniRef {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// Body of `POST /v1/cni/del` and `POST /v1/cni/check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniTarget {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The shibafu network.
    pub network: String,
}

/// Body of `POST /v1/cni/gc`: keep only these attachments of `network` on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniGc {
    /// The shibafu network.
    pub network: String,
    /// The attachments the runtime still uses (`cni.dev/valid-attachments`).
    pub valid: Vec<CniRef>,
}

/// Answer of `POST /v1/cni/gc` and `POST /v1/cni/del`: the attachments removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRemoved {
    /// The attachments removed (none when they were already gone).
    pub removed: Vec<CniRef>,
}

/// One attachment with everything a CNI result reports (answer of add and check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    /// Its DNS name.
    pub name: String,
    /// The network.
    pub network: String,
    /// The namespace file.
    pub netns: String,
    /// Interface inside the namespace.
    pub ifname: String,
    /// Its MAC address.
    pub mac: MacAddr,
    /// The network's bridge on the host.
    pub bridge: String,
    /// The bridge's MAC address.
    pub bridge_mac: MacAddr,
    /// The host end of the veth pair.
    pub host_ifname: String,
    /// Addresses with their prefix length: IPv4 first, then IPv6 when the network has it.
    pub addresses: Vec<IpNet>,
    /// The gateway of each address, in the same order.
    pub gateways: Vec<IpAddr>,
    /// The network's DNS server (its IPv4 gateway).
    pub nameserver: IpAddr,
    /// The network's DNS zone.
    pub zone: String,
}

/// Answer of `POST /v1/cni/check`: the attachment and what differs from what it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniCheck {
    /// The attachment as the agent records it.
    pub attachment: CniAttachment,
    /// Differences between the kernel and the attachment (empty when everything is in place).
    pub problems: Vec<String>,
}

/// Is `id` a container id as the CNI spec allows it (letters, digits, `_`, `.`, `-`, starting
/// with a letter or digit; at most 255 long here, as it names a file)?
pub fn valid_container_id(id: &str) -> bool {
    id.len() <= 255
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Agent {
    /// `POST /v1/cni/add`.
    pub async fn cni_add(&self, req: &CniAdd) -> Result<CniAttachment, ClientError> {
        self.client().post("/v1/cni/add", req).await
    }

    /// `POST /v1/cni/del`: idempotent.
    pub async fn cni_del(&self, req: &CniTarget) -> Result<CniRemoved, ClientError> {
        self.client().post("/v1/cni/del", req).await
    }

    /// `POST /v1/cni/check`.
    pub async fn cni_check(&self, req: &CniTarget) -> Result<CniCheck, ClientError> {
        self.client().post("/v1/cni/check", req).await
    }

    /// `POST /v1/cni/gc`.
    pub async fn cni_gc(&self, req: &CniGc) -> Result<CniRemoved, ClientError> {
        self.client().post("/v1/cni/gc", req).await
    }
}
