//! Errors of attaching and detaching, and how the API reports them.

use shibafu_overlay::api::{ApiError, ErrorKind};
use shibafu_overlay::ipam::IpamError;
use shibafu_overlay::model::{ModelError, ServiceError};

use crate::dataplane::DataplaneError;
use crate::registry::book::BookError;
use crate::registry::RegistryError;

/// Errors of attaching and detaching workloads.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A name that is not a DNS label.
    #[error(transparent)]
    Name(#[from] ModelError),
    /// A weight or health check that is not valid.
    #[error(transparent)]
    Service(#[from] ServiceError),
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
    /// The workload has an interface of that name already (a second CNI ADD).
    #[error("{name:?} already has an interface {ifname:?}; delete it first (CNI DEL)")]
    IfnameTaken {
        /// The workload.
        name: String,
        /// The interface.
        ifname: String,
    },
    /// An interface name the kernel would refuse.
    #[error("invalid interface name {0:?}: 1-15 characters without '/', ':' or spaces")]
    InvalidIfname(String),
    /// No network given.
    #[error("give at least one network")]
    NoNetwork,
    /// This node does not build the network (its problem report says why).
    #[error("network {network:?} is not built on this node: {reason}")]
    NotBuiltHere {
        /// The network.
        network: String,
        /// Why.
        reason: String,
    },
    /// The agent has not read the cluster yet.
    #[error("the agent is still starting (it has not read the cluster yet); retry in a moment")]
    Starting,
    /// Address management refused.
    #[error("network {network:?}: {source}")]
    Ipam {
        /// The network.
        network: String,
        /// The IPAM error.
        source: IpamError,
    },
    /// The kernel side failed.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The local book could not be saved.
    #[error(transparent)]
    Book(#[from] BookError),
    /// An actor of the agent did not answer.
    #[error("agent is shutting down ({0}); retry")]
    Mailbox(#[from] actix::MailboxError),
}

impl From<RegistryError> for AttachError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Unknown(name) => AttachError::UnknownWorkload(name),
            RegistryError::Book(b) => AttachError::Book(b),
        }
    }
}

impl AttachError {
    /// The API error for this failure (the message is the user's, the kind sets the status).
    pub fn to_api(&self) -> ApiError {
        let kind = match self {
            AttachError::Name(_)
            | AttachError::Service(_)
            | AttachError::NoNetwork
            | AttachError::InvalidIfname(_) => ErrorKind::Invalid,
            AttachError::IfnameTaken { .. } => ErrorKind::Attached,
            AttachError::Ipam { source, .. } => match source {
                IpamError::Store(_) => ErrorKind::Unavailable,
                IpamError::AddressTaken { .. }
                | IpamError::Exhausted { .. }
                | IpamError::Contention { .. }
                | IpamError::OwnedByOtherNode { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Invalid,
            },
            AttachError::UnknownNetwork(_) | AttachError::UnknownWorkload(_) => ErrorKind::NotFound,
            AttachError::NameTaken { .. }
            | AttachError::AlreadyAttached { .. }
            | AttachError::Exists(_) => ErrorKind::Duplicate,
            AttachError::NotBuiltHere { .. } => ErrorKind::Conflict,
            AttachError::Starting => ErrorKind::Unavailable,
            AttachError::Dataplane(_) | AttachError::Book(_) | AttachError::Mailbox(_) => {
                ErrorKind::Internal
            }
        };
        ApiError::new(kind, self.to_string())
    }
}
