//! The local agent API (unix socket): containers and attachments on this node, as bodies and
//! typed calls. The CLI's `run`, `exec`, `ps`, `logs`, `stop`, `rm` and `network attach/detach`
//! go through it.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::client::{Client, ClientError};
use super::target::Target;
use super::types::encode_segment;
use crate::model::HealthSpec;

/// Body of `POST /v1/containers`: start a container on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunContainer {
    /// Container name (a DNS label), also its hostname and DNS name.
    pub name: String,
    /// Networks to attach, in order: eth0 on the first, eth1 on the second, ...
    pub networks: Vec<String>,
    /// Fixed IPv4 address on the first network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Extra DNS names in each network's zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Service this container is an instance of (`<service>.<zone>` resolves to all instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port, published as SRV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weight of this instance (1-1000, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Health check of this instance, in place of the service's (or changes to it).
    #[serde(default, skip_serializing_if = "HealthSpec::is_empty")]
    pub health: HealthSpec,
    /// Root filesystem directory; the host filesystem when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Capabilities added to Docker's default set (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped from it (`ALL` drops every one; additions then stay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
}

/// Body of `POST /v1/attachments`: attach an existing network namespace to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    /// Network name.
    pub network: String,
    /// Path of the network namespace (`/run/netns/x`, `/proc/<pid>/ns/net` is not stable).
    pub netns: String,
    /// Name of the workload (its DNS name).
    pub name: String,
    /// Fixed IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Extra DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// One interface of a container or attached namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Network name.
    pub network: String,
    /// Interface name inside the namespace.
    pub ifname: String,
    /// IPv4 address.
    pub ipv4: Ipv4Addr,
    /// IPv6 address, when the network has a v6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// MAC address.
    pub mac: crate::model::MacAddr,
}

/// A container (or attached namespace) as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Name.
    pub name: String,
    /// `created`, `running`, `exited` or `attached` (a namespace attached from outside).
    pub state: String,
    /// Host pid of the container's PID 1 while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Exit code once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Command and arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// The network namespace file.
    pub netns: String,
    /// Interfaces, eth0 first.
    pub interfaces: Vec<InterfaceInfo>,
    /// For a namespace a container runtime attached through CNI: its container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
}

/// Answer of `GET /v1/containers/{name}/logs?offset=N`: log bytes from an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Log text from the requested offset (lossy UTF-8), at most 1 MiB.
    pub data: String,
    /// Offset to ask from next time.
    pub next_offset: u64,
    /// Exit code when the container has exited (no more output will come).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Path of a container resource.
pub fn container_path(name: &str) -> String {
    format!("/v1/containers/{}", encode_segment(name))
}

/// A client of the local agent API.
#[derive(Debug, Clone)]
pub struct Agent {
    client: Client,
}

impl Agent {
    /// An agent client; `hint` is shown when it cannot be reached.
    pub fn new(target: Target, hint: impl Into<String>) -> Agent {
        Agent {
            client: Client::new(target, "agent", hint),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `POST /v1/containers`: attaches the networks, then starts the command.
    pub async fn run(&self, req: &RunContainer) -> Result<ContainerInfo, ClientError> {
        self.client.post("/v1/containers", req).await
    }

    /// `GET /v1/containers`: every container and attached namespace on this node.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, ClientError> {
        self.client.get("/v1/containers").await
    }

    /// `GET /v1/containers/{name}`.
    pub async fn get(&self, name: &str) -> Result<ContainerInfo, ClientError> {
        self.client.get(&container_path(name)).await
    }

    /// `GET /v1/containers/{name}/logs?offset=N`.
    pub async fn logs(&self, name: &str, offset: u64) -> Result<LogChunk, ClientError> {
        self.client
            .get(&format!("{}/logs?offset={offset}", container_path(name)))
            .await
    }

    /// `POST /v1/containers/{name}/stop?grace=SECS`: SIGTERM, then SIGKILL after the grace.
    pub async fn stop(&self, name: &str, grace_secs: u64) -> Result<ContainerInfo, ClientError> {
        let path = format!("{}/stop?grace={grace_secs}", container_path(name));
        self.client.post(&path, &serde_json::json!({})).await
    }

    /// `DELETE /v1/containers/{name}[?force=true]`: removes an exited container (running ones
    /// only with force) with its endpoints, addresses and namespace.
    pub async fn remove(&self, name: &str, force: bool) -> Result<ContainerInfo, ClientError> {
        let mut path = container_path(name);
        if force {
            path.push_str("?force=true");
        }
        self.client.delete(&path).await
    }

    /// `GET /v1/tunnel`: how this node's encryption stands.
    pub async fn tunnel(&self) -> Result<super::TunnelReport, ClientError> {
        self.client.get("/v1/tunnel").await
    }

    /// `GET /v1/status`: the name of the agent's node.
    pub async fn node_name(&self) -> Result<String, ClientError> {
        let status: serde_json::Value = self.client.get("/v1/status").await?;
        Ok(status["node"].as_str().unwrap_or_default().to_string())
    }

    /// `POST /v1/attachments`: attaches an existing namespace to a network.
    pub async fn attach(&self, req: &Attach) -> Result<ContainerInfo, ClientError> {
        self.client.post("/v1/attachments", req).await
    }

    /// `DELETE /v1/attachments/{network}/{name}`: detaches it again.
    pub async fn detach(&self, network: &str, name: &str) -> Result<ContainerInfo, ClientError> {
        let path = format!(
            "/v1/attachments/{}/{}",
            encode_segment(network),
            encode_segment(name)
        );
        self.client.delete(&path).await
    }
}
