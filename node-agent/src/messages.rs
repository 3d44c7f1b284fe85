//! Messages between the agent's actors. Public ones are the contract other actors plug into:
//! subscribe to cluster changes, publish keys this node owns, ask for status.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::{Message, Recipient};
use serde::{Deserialize, Serialize};
use shibafu_overlay::model::Network;
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::StoreError;
use shibafu_overlay::telemetry::Trace;

use crate::registry::LocalWorkloads;

/// Typed cluster changes, in order, with the whole state they lead to.
///
/// A subscriber that joins after the agent first listed the cluster gets one message at once
/// with no changes and the current state; one that joined before gets the first listing as
/// additions. Either way `state` is complete: reconcile from it, and use `changes` to act on
/// what moved since the previous message.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ClusterChanged {
    /// What changed, in the order to apply it.
    pub changes: Vec<StateChange>,
    /// The cluster state after these changes.
    pub state: Arc<ClusterState>,
}

impl ClusterChanged {
    /// The trace contexts of the writes behind these changes (those that carry one).
    pub fn traces(&self) -> Vec<Trace> {
        self.changes
            .iter()
            .map(StateChange::trace)
            .filter(|t| !t.is_none())
            .collect()
    }
}

/// This node's committed workloads, from the local registry: sent to every subscriber after
/// each change (attach, detach) and at once when it subscribes. DNS answers this node's names
/// from it without waiting for etcd to echo the records; the runtime lists containers from it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LocalChanged(pub Arc<LocalWorkloads>);

/// Registers a subscriber for [`LocalChanged`] with the local registry.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeLocal(pub Recipient<LocalChanged>);

/// Registers a subscriber for [`ClusterChanged`]; it gets the current state at once if the
/// agent has already listed the cluster.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<ClusterChanged>);

/// Publishes a key this node owns (an endpoint, health record...) under the node lease.
///
/// The agent remembers it and writes it again whenever the lease is re-granted (after etcd lost
/// the node), so owned keys live exactly as long as the node. The answer says whether the write
/// reached the store now; when it did not, the key is still written on re-registration.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutOwned {
    /// The key.
    pub key: Key,
    /// The JSON value.
    pub value: Vec<u8>,
}

/// Forgets and deletes a key this node owns.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteOwned {
    /// The key.
    pub key: Key,
}

/// Revokes the node lease (deleting the node and every key it owns); used on `--deregister`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Deregister;

/// Asks for the agent's status.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "AgentStatus")]
pub struct GetStatus;

/// Asks for the networks as this agent sees them.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<Network>")]
pub struct GetNetworks;

/// Answer of `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// This node's name.
    pub node: String,
    /// This node's underlay address.
    pub underlay: IpAddr,
    /// Agent version.
    pub version: String,
    /// Whether the last exchange with etcd succeeded.
    pub etcd_connected: bool,
    /// Whether the node is registered under a live lease.
    pub registered: bool,
    /// Store revision of the agent's view of the cluster.
    pub revision: i64,
    /// Names of the networks this agent sees.
    pub networks: Vec<String>,
    /// Names of the live nodes this agent sees.
    pub nodes: Vec<String>,
    /// Upstream DNS servers for names outside the cluster.
    pub upstream_dns: Vec<SocketAddr>,
}

/// Trace one DNS query through a network's server on this node, as `client` asks it.
#[derive(Debug, Message)]
#[rtype(result = "Result<shibafu_overlay::dns::trace::DnsTrace, shibafu_overlay::api::ApiError>")]
pub struct TraceDns {
    /// The network whose server answers.
    pub network: String,
    /// The name asked.
    pub query: String,
    /// The type asked.
    pub qtype: hickory_proto::rr::RecordType,
    /// The requester (its view decides which zones it sees).
    pub client: std::net::IpAddr,
}
