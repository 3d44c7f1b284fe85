//! Typed calls to the coordinator API (`/v1/...`).

use serde::{Deserialize, Serialize};

use super::apply::{ApplyAnswer, ApplyRequest, Document};
use super::client::{Client, ClientError};
use super::policies::{PolicyInfo, PolicySpec};
use super::services::{ServiceInfo, ServiceSpec};
use super::target::Target;
use super::types::{encode_segment, network_path, CreateNetwork, Health, NodeInfo, RemovedNetwork};
use crate::model::{Link, Network, NetworkProblem, Policy, Service};

/// Body of `POST /v1/links`: allow two networks to route to each other (`connect-networks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkNetworks {
    /// One network.
    pub a: String,
    /// The other network.
    pub b: String,
}

/// Path of the link between two networks, in the order given (the server accepts either).
pub fn link_path(a: &str, b: &str) -> String {
    format!("/v1/links/{}/{}", encode_segment(a), encode_segment(b))
}

/// Path of one service.
pub fn service_path(network: &str, name: &str) -> String {
    format!(
        "/v1/services/{}/{}",
        encode_segment(network),
        encode_segment(name)
    )
}

/// Path of one network policy.
pub fn policy_path(name: &str) -> String {
    format!("/v1/policies/{}", encode_segment(name))
}

/// A client of the coordinator API.
#[derive(Debug, Clone)]
pub struct Coordinator {
    client: Client,
}

impl Coordinator {
    /// A coordinator client; `hint` is shown when it cannot be reached.
    pub fn new(target: Target, hint: impl Into<String>) -> Coordinator {
        Coordinator {
            client: Client::new(target, "coordinator", hint),
        }
    }

    /// Wraps an already configured client.
    pub fn from_client(client: Client) -> Coordinator {
        Coordinator { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `POST /v1/networks`: creates a network; answers it with its VNI and zone filled in.
    pub async fn create_network(&self, req: &CreateNetwork) -> Result<Network, ClientError> {
        self.client.post("/v1/networks", req).await
    }

    /// `GET /v1/networks`: every network, sorted by name.
    pub async fn list_networks(&self) -> Result<Vec<Network>, ClientError> {
        self.client.get("/v1/networks").await
    }

    /// `GET /v1/networks/{name}`.
    pub async fn get_network(&self, name: &str) -> Result<Network, ClientError> {
        self.client.get(&network_path(name)).await
    }

    /// `GET /v1/networks/{name}/problems`: why nodes do not build the network, by node.
    pub async fn network_problems(&self, name: &str) -> Result<Vec<NetworkProblem>, ClientError> {
        self.client
            .get(&format!("{}/problems", network_path(name)))
            .await
    }

    /// `DELETE /v1/networks/{name}[?force=true]`.
    pub async fn remove_network(
        &self,
        name: &str,
        force: bool,
    ) -> Result<RemovedNetwork, ClientError> {
        let mut path = network_path(name);
        if force {
            path.push_str("?force=true");
        }
        self.client.delete(&path).await
    }

    /// `POST /v1/links`: links two networks (idempotent); answers the link in canonical order.
    pub async fn link_networks(&self, a: &str, b: &str) -> Result<Link, ClientError> {
        let req = LinkNetworks {
            a: a.to_string(),
            b: b.to_string(),
        };
        self.client.post("/v1/links", &req).await
    }

    /// `DELETE /v1/links/{a}/{b}`: isolates two linked networks again.
    pub async fn unlink_networks(&self, a: &str, b: &str) -> Result<Link, ClientError> {
        self.client.delete(&link_path(a, b)).await
    }

    /// `GET /v1/links`: every link, sorted.
    pub async fn list_links(&self) -> Result<Vec<Link>, ClientError> {
        self.client.get("/v1/links").await
    }

    /// `GET /v1/nodes`: every live node, sorted by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.client.get("/v1/nodes").await
    }

    /// `POST /v1/nodes/<node>/rotate-key`: asks `node` to rotate its WireGuard key; the node
    /// as it stood when asked.
    pub async fn rotate_key(&self, node: &str) -> Result<NodeInfo, ClientError> {
        let path = format!("/v1/nodes/{}/rotate-key", encode_segment(node));
        self.client.post(&path, &serde_json::json!({})).await
    }

    /// `GET /v1/endpoints`: every endpoint, sorted by network and name.
    pub async fn list_endpoints(&self) -> Result<Vec<crate::model::Endpoint>, ClientError> {
        self.client.get("/v1/endpoints").await
    }

    /// `POST /v1/services`: creates a service.
    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<Service, ClientError> {
        self.client.post("/v1/services", spec).await
    }

    /// `PUT /v1/services/{network}/{name}`: changes the fields `spec` sets.
    pub async fn update_service(&self, spec: &ServiceSpec) -> Result<Service, ClientError> {
        let path = service_path(&spec.network, &spec.name);
        self.client.put(&path, spec).await
    }

    /// `GET /v1/services`: every service with its instances.
    pub async fn list_services(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        self.client.get("/v1/services").await
    }

    /// `GET /v1/services/{network}/{name}`: one service with its instances.
    pub async fn get_service(&self, network: &str, name: &str) -> Result<ServiceInfo, ClientError> {
        self.client.get(&service_path(network, name)).await
    }

    /// `DELETE /v1/services/{network}/{name}`: removes a service without instances.
    pub async fn remove_service(
        &self,
        network: &str,
        name: &str,
    ) -> Result<ServiceInfo, ClientError> {
        self.client.delete(&service_path(network, name)).await
    }

    /// `POST /v1/policies`: creates a network policy; answers it as stored.
    pub async fn create_policy(&self, spec: &PolicySpec) -> Result<Policy, ClientError> {
        self.client.post("/v1/policies", spec).await
    }

    /// `GET /v1/policies`: every policy, sorted by name.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        self.client.get("/v1/policies").await
    }

    /// `GET /v1/policies/{name}`: one policy with its counters summed over nodes.
    pub async fn get_policy(&self, name: &str) -> Result<PolicyInfo, ClientError> {
        self.client.get(&policy_path(name)).await
    }

    /// `DELETE /v1/policies/{name}`: removes a policy and its counters; answers it.
    pub async fn remove_policy(&self, name: &str) -> Result<Policy, ClientError> {
        self.client.delete(&policy_path(name)).await
    }

    /// `POST /v1/apply`: converges the cluster to a document (or only answers the changes).
    pub async fn apply(&self, req: &ApplyRequest) -> Result<ApplyAnswer, ClientError> {
        self.client.post("/v1/apply", req).await
    }

    /// `GET /v1/export`: the whole cluster as a document.
    pub async fn export(&self) -> Result<Document, ClientError> {
        self.client.get("/v1/export").await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.client.get("/v1/health").await
    }
}
