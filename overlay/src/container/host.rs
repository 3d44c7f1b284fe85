//! The kernel, process and file operations a container runtime needs, behind one trait:
//! [`ShimContainerHost`] does them for real (shim processes, pinned namespaces, a state
//! directory); [`super::FakeContainerHost`] simulates them in memory for unit tests of callers.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tracing::warn;

use super::state::{ContainerDir, LogRead, Status};
use super::{exit_watch, launch, netns_file, ContainerError, ContainerSpec};

/// How long a container may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once a container no longer runs, with its final status (see
/// [`exit_watch::exited`]).
pub type ExitWatch = Pin<Box<dyn Future<Output = Status> + Send>>;

/// A container found in the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its name.
    pub name: String,
    /// Command and arguments, from its spec.
    pub command: Vec<String>,
    /// Its status as the files say.
    pub status: Status,
    /// Whether its network namespace file is still there (not released since it exited).
    pub pinned: bool,
}

/// Everything a new container is made of, as the runtime decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContainer {
    /// Its name (also its hostname).
    pub name: String,
    /// The pinned network namespace it joins.
    pub netns: PathBuf,
    /// Root filesystem; `None` = the host filesystem.
    pub rootfs: Option<PathBuf>,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Capabilities of its processes.
    pub caps: super::caps::CapSet,
    /// Its /etc/resolv.conf.
    pub resolv_conf: String,
    /// Its /etc/hosts.
    pub hosts: String,
    /// Its /etc/hostname.
    pub hostname: String,
}

/// Container operations on this host, by container name. Every method but [`Self::watch_exit`]
/// and [`Self::netns_path`] may block (files, processes, mounts): call them on a blocking thread.
pub trait ContainerHost: Send + Sync + 'static {
    /// Every container recorded on this host; unreadable ones are logged and left out.
    fn load(&self) -> Result<Vec<Recorded>, ContainerError>;
    /// Where the network namespace of `name` is pinned (no I/O).
    fn netns_path(&self, name: &str) -> PathBuf;
    /// True if anything is recorded under `name` (even a half-written container).
    fn exists(&self, name: &str) -> bool;
    /// True if `path` is a directory (usable as a root filesystem).
    fn is_dir(&self, path: &Path) -> bool;
    /// Creates a fresh network namespace pinned on `netns`.
    fn pin_netns(&self, netns: &Path) -> Result<(), ContainerError>;
    /// Unpins and removes a namespace file; a missing one is fine.
    fn unpin_netns(&self, netns: &Path) -> Result<(), ContainerError>;
    /// Records a new container: its spec and /etc files.
    fn prepare(&self, new: &NewContainer) -> Result<(), ContainerError>;
    /// Starts a prepared container; returns once it runs (or has already exited).
    fn start(&self, name: &str) -> Result<Status, ContainerError>;
    /// SIGTERM to the container, SIGKILL after `grace`; returns its status then.
    fn stop(&self, name: &str, grace: Duration) -> Status;
    /// Resolves once the container no longer runs (does not block; spawn it on the runtime).
    fn watch_exit(&self, name: &str) -> ExitWatch;
    /// A piece of the container's log from `offset`.
    fn read_log(&self, name: &str, offset: u64) -> Result<LogRead, ContainerError>;
    /// Removes everything recorded for the container (its namespace file excepted).
    fn remove(&self, name: &str) -> Result<(), ContainerError>;
}

/// Containers run by `<agent_bin> shim`, recorded under `<state_dir>/containers/<name>/`, with
/// namespaces pinned on `<state_dir>/netns/<name>`.
#[derive(Debug, Clone)]
pub struct ShimContainerHost {
    state_dir: PathBuf,
    agent_bin: PathBuf,
}

impl ShimContainerHost {
    /// Containers under `state_dir`, started through the `shim` subcommand of `agent_bin`.
    pub fn new(state_dir: PathBuf, agent_bin: PathBuf) -> ShimContainerHost {
        ShimContainerHost {
            state_dir,
            agent_bin,
        }
    }

    fn dir(&self, name: &str) -> ContainerDir {
        ContainerDir::under(&self.state_dir, name)
    }
}

impl ContainerHost for ShimContainerHost {
    fn load(&self) -> Result<Vec<Recorded>, ContainerError> {
        let root = self.state_dir.join("containers");
        let entries = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(ContainerError::State {
                    path: root,
                    reason: e.to_string(),
                })
            }
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let dir = ContainerDir::new(entry.path());
            match dir.read_spec() {
                Ok(spec) => found.push(Recorded {
                    command: spec.command,
                    status: dir.status(),
                    pinned: self.netns_path(&name).exists(),
                    name,
                }),
                Err(e) => warn!(container = %name, error = %e, "skipping an unreadable container"),
            }
        }
        Ok(found)
    }

    fn netns_path(&self, name: &str) -> PathBuf {
        self.state_dir.join("netns").join(name)
    }

    fn exists(&self, name: &str) -> bool {
        self.dir(name).path().exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn pin_netns(&self, netns: &Path) -> Result<(), ContainerError> {
        if let Some(parent) = netns.parent() {
            fs::create_dir_all(parent).map_err(|e| ContainerError::Sys {
                what: format!("create {}", parent.display()),
                source: e,
            })?;
        }
        netns_file::create(netns)
    }

    fn unpin_netns(&self, netns: &Path) -> Result<(), ContainerError> {
        netns_file::remove(netns)
    }

    fn prepare(&self, new: &NewContainer) -> Result<(), ContainerError> {
        let dir = self.dir(&new.name);
        let spec = ContainerSpec {
            name: new.name.clone(),
            netns: new.netns.clone(),
            dir: dir.path().to_path_buf(),
            rootfs: new.rootfs.clone(),
            command: new.command.clone(),
            env: new.env.clone(),
            caps: new.caps,
        };
        dir.prepare(&spec, &new.resolv_conf, &new.hosts, &new.hostname)
    }

    fn start(&self, name: &str) -> Result<Status, ContainerError> {
        launch::start(&self.agent_bin, &self.dir(name), START_TIMEOUT)
    }

    fn stop(&self, name: &str, grace: Duration) -> Status {
        launch::stop(&self.dir(name), grace)
    }

    fn watch_exit(&self, name: &str) -> ExitWatch {
        Box::pin(exit_watch::exited(self.dir(name)))
    }

    fn read_log(&self, name: &str, offset: u64) -> Result<LogRead, ContainerError> {
        self.dir(name).read_log(offset)
    }

    fn remove(&self, name: &str) -> Result<(), ContainerError> {
        self.dir(name).remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_recorded_containers_and_skips_unreadable_ones() {
        let root = std::env::temp_dir().join(format!("sf-chost-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let host = ShimContainerHost::new(root.clone(), "/bin/false".into());
        assert_eq!(host.load().expect("no state yet"), vec![]);
        let new = NewContainer {
            name: "job".into(),
            netns: host.netns_path("job"),
            rootfs: None,
            command: vec!["true".into()],
            env: vec![],
            caps: Default::default(),
            resolv_conf: String::new(),
            hosts: String::new(),
            hostname: "job\n".into(),
        };
        host.prepare(&new).expect("prepare");
        ContainerDir::under(&root, "job")
            .write_exit(3)
            .expect("exit");
        fs::create_dir_all(root.join("containers/half")).expect("half-written");
        assert!(host.exists("job") && host.exists("half") && !host.exists("other"));
        assert_eq!(
            host.load().expect("load"),
            vec![Recorded {
                name: "job".into(),
                command: vec!["true".into()],
                status: Status::Exited(3),
                pinned: false,
            }]
        );
        host.remove("job").expect("remove");
        assert!(!host.exists("job"));
        let _ = fs::remove_dir_all(&root);
    }
}
