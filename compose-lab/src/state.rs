//! The lab's state file (`<state dir>/lab.json`): what `up` made, so any later process can
//! stop, restart, fault or tear down the lab. Written after every step, so a failed `up` can be
//! cleaned up from it too.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// A long-running process of the lab and how to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSpec {
    /// Namespace it runs in.
    pub netns: String,
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Log file (stdout and stderr, appended).
    pub log: PathBuf,
    /// Pid while it runs; `None` when stopped.
    pub pid: Option<u32>,
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Underlay address.
    pub addr: String,
    /// The agent API socket.
    pub api_socket: PathBuf,
    /// Whether `partition` cut its link.
    #[serde(default)]
    pub partitioned: bool,
}

/// One coordinator of the lab, on a host of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    /// Component name (`coordinator1`, ...), also its name in the cluster.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Underlay address.
    pub addr: String,
    /// API URL.
    pub url: String,
    /// DNS address, `ip:port`.
    pub dns: String,
}

/// Everything a lab made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LabState {
    /// Lab name.
    pub name: String,
    /// Underlay subnet.
    pub subnet: String,
    /// Namespaces created, in creation order.
    pub namespaces: Vec<String>,
    /// Nodes.
    pub nodes: Vec<NodeState>,
    /// Coordinators, in order.
    #[serde(default)]
    pub coordinators: Vec<CoordinatorState>,
    /// Processes by component name (`etcd`, `coordinatorN`, `dns`, or a node name for its agent).
    pub procs: BTreeMap<String, ProcSpec>,
    /// etcd client URL (the first member's).
    pub etcd_url: String,
    /// Every etcd member's client URL, comma-separated (empty in labs from before).
    #[serde(default)]
    pub etcd_endpoints: String,
    /// The first coordinator's URL.
    pub coordinator_url: String,
    /// Upstream DNS server, `ip:port`.
    pub dns_addr: String,
    /// The lab's CA and certificates, in a secure lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<PathBuf>,
    /// True once `up` finished.
    pub ready: bool,
}

impl LabState {
    /// Every etcd member's client URL, comma-separated.
    pub fn etcd_endpoints(&self) -> &str {
        if self.etcd_endpoints.is_empty() {
            &self.etcd_url
        } else {
            &self.etcd_endpoints
        }
    }

    /// Reads the state file of a lab; `None` if there is none.
    pub fn load(layout: &Layout) -> anyhow::Result<Option<LabState>> {
        let path = layout.state_file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading lab state {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading lab state {}", path.display())),
        }
    }

    /// Loads the state of a lab that must exist.
    pub fn load_existing(layout: &Layout) -> anyhow::Result<LabState> {
        LabState::load(layout)?.with_context(|| {
            format!(
                "lab {:?} is not up (no {}): start it with `shibafu-lab --name {} up`",
                layout.name,
                layout.state_file().display(),
                layout.name
            )
        })
    }

    /// Writes the state file atomically (temp file + rename).
    pub fn save(&self, layout: &Layout) -> anyhow::Result<()> {
        let path = layout.state_file();
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Every coordinator URL, comma-separated, as `SHIBAFU_COORDINATOR` takes them.
    pub fn coordinator_urls(&self) -> String {
        if self.coordinators.is_empty() {
            return self.coordinator_url.clone();
        }
        let urls: Vec<&str> = self.coordinators.iter().map(|c| c.url.as_str()).collect();
        urls.join(",")
    }

    /// A coordinator by name.
    pub fn coordinator(&self, name: &str) -> Option<&CoordinatorState> {
        self.coordinators.iter().find(|c| c.name == name)
    }

    /// A node by name, with a helpful error naming the lab's nodes.
    pub fn node(&self, name: &str) -> anyhow::Result<&NodeState> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "lab {:?} has no node {name:?} (nodes: {})",
                self.name,
                names.join(", ")
            )
        })
    }
}

/// An exclusive lock on a lab, held while a command changes it.
pub struct LabLock {
    file: File,
    path: PathBuf,
}

impl LabLock {
    /// Takes the lock of a lab, waiting for another lab command to finish.
    pub fn acquire(layout: &Layout) -> anyhow::Result<LabLock> {
        let path = layout.lock_file();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(LabLock { file, path })
    }

    /// Releases the lock and removes the lock file (after `down`).
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}
