//! Containers on one host: the spec the agent hands to the shim, the files a container sees
//! (/etc/resolv.conf, /etc/hosts, /etc/hostname), persistent network namespace files, the shim
//! that enters the namespaces and runs the command, the on-disk state of each container, exits
//! observed through pidfds, and [`ContainerHost`]: all of it behind one trait, with a fake.

pub mod caps;
pub mod enter;
pub mod etc_files;
pub mod exit_watch;
mod fake;
mod host;
pub mod launch;
pub mod netns_file;
pub mod sealed;
pub mod shim;
pub mod state;

pub use fake::{FakeContainerHost, FakeOp};
pub use host::{ContainerHost, ExitWatch, NewContainer, Recorded, ShimContainerHost};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Errors of container set-up and inspection.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A spec or state file could not be read or parsed.
    #[error("container state {path}: {reason}")]
    State {
        /// File involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The command is empty or contains a NUL byte.
    #[error("invalid command: {0}")]
    InvalidCommand(String),
}

impl ContainerError {
    /// Wraps the last OS error with what was being done.
    pub fn last_os(what: impl Into<String>) -> ContainerError {
        ContainerError::Sys {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}

/// Everything the shim needs to start a container; written as JSON by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Container name (also its hostname).
    pub name: String,
    /// Persistent network namespace file the container joins.
    pub netns: PathBuf,
    /// The container's state directory (pid, exit code, etc files live there).
    pub dir: PathBuf,
    /// Root filesystem; `None` = the host filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment variables `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Capabilities of the command (Docker's default set when absent).
    #[serde(default)]
    pub caps: caps::CapSet,
}
