//! An in-memory [`ContainerHost`] for unit tests of callers: containers are records, their exits
//! are told by the test ([`FakeContainerHost::exit`]), and operations can be made to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::host::{ContainerHost, ExitWatch, NewContainer, Recorded};
use super::state::{LogRead, Status};
use super::ContainerError;

/// An operation of the fake that a test can make fail once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FakeOp {
    /// [`ContainerHost::pin_netns`].
    Pin,
    /// [`ContainerHost::prepare`].
    Prepare,
    /// [`ContainerHost::start`].
    Start,
    /// [`ContainerHost::remove`].
    Remove,
}

struct FakeContainer {
    command: Vec<String>,
    log: Vec<u8>,
    status: watch::Sender<Status>,
}

#[derive(Default)]
struct Inner {
    containers: BTreeMap<String, FakeContainer>,
    pinned: BTreeSet<PathBuf>,
    failing: BTreeSet<FakeOp>,
    next_pid: i32,
}

/// A [`ContainerHost`] in memory: `start` makes a container run (pids from 1000), `stop` makes
/// it exit with 143, and the test ends it with [`FakeContainerHost::exit`].
#[derive(Default)]
pub struct FakeContainerHost {
    inner: Mutex<Inner>,
}

fn failed(op: FakeOp) -> ContainerError {
    ContainerError::State {
        path: PathBuf::from("/fake"),
        reason: format!("{op:?} failed (injected)"),
    }
}

impl FakeContainerHost {
    /// A host with no containers.
    pub fn new() -> FakeContainerHost {
        FakeContainerHost::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, op: FakeOp) -> Result<(), ContainerError> {
        if self.lock().failing.remove(&op) {
            Err(failed(op))
        } else {
            Ok(())
        }
    }

    /// Makes the next `op` fail.
    pub fn fail_next(&self, op: FakeOp) {
        self.lock().failing.insert(op);
    }

    /// A container as an earlier agent left it (for restart tests), its namespace pinned or not.
    pub fn record(&self, name: &str, command: &[&str], status: Status, pinned: bool) {
        let mut inner = self.lock();
        inner.containers.insert(
            name.to_string(),
            FakeContainer {
                command: command.iter().map(|c| c.to_string()).collect(),
                log: Vec::new(),
                status: watch::Sender::new(status),
            },
        );
        if pinned {
            inner.pinned.insert(self.netns_path(name));
        }
    }

    /// The container's command exits with `code`: watchers of its exit wake up.
    pub fn exit(&self, name: &str, code: i32) {
        if let Some(c) = self.lock().containers.get(name) {
            c.status.send_replace(Status::Exited(code));
        }
    }

    /// Appends output to the container's log.
    pub fn write_log(&self, name: &str, text: &str) {
        if let Some(c) = self.lock().containers.get_mut(name) {
            c.log.extend_from_slice(text.as_bytes());
        }
    }

    /// The container's status, `None` if nothing is recorded under `name`.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.lock().containers.get(name).map(|c| *c.status.borrow())
    }

    /// True while a namespace is pinned on `netns`.
    pub fn is_pinned(&self, netns: &Path) -> bool {
        self.lock().pinned.contains(netns)
    }
}

impl ContainerHost for FakeContainerHost {
    fn load(&self) -> Result<Vec<Recorded>, ContainerError> {
        let inner = self.lock();
        Ok(inner
            .containers
            .iter()
            .map(|(name, c)| Recorded {
                name: name.clone(),
                command: c.command.clone(),
                status: *c.status.borrow(),
                pinned: inner.pinned.contains(&self.netns_path(name)),
            })
            .collect())
    }

    fn netns_path(&self, name: &str) -> PathBuf {
        Path::new("/fake/netns").join(name)
    }

    fn exists(&self, name: &str) -> bool {
        self.lock().containers.contains_key(name)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.starts_with("/fake/rootfs")
    }

    fn pin_netns(&self, netns: &Path) -> Result<(), ContainerError> {
        self.check(FakeOp::Pin)?;
        if !self.lock().pinned.insert(netns.to_path_buf()) {
            return Err(ContainerError::Sys {
                what: format!("create netns {}", netns.display()),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        Ok(())
    }

    fn unpin_netns(&self, netns: &Path) -> Result<(), ContainerError> {
        self.lock().pinned.remove(netns);
        Ok(())
    }

    fn prepare(&self, new: &NewContainer) -> Result<(), ContainerError> {
        self.check(FakeOp::Prepare)?;
        self.lock().containers.insert(
            new.name.clone(),
            FakeContainer {
                command: new.command.clone(),
                log: Vec::new(),
                status: watch::Sender::new(Status::Created),
            },
        );
        Ok(())
    }

    fn start(&self, name: &str) -> Result<Status, ContainerError> {
        self.check(FakeOp::Start)?;
        let mut inner = self.lock();
        inner.next_pid += 1;
        let status = Status::Running(1000 + inner.next_pid);
        let c = inner
            .containers
            .get(name)
            .ok_or_else(|| failed(FakeOp::Start))?;
        c.status.send_replace(status);
        Ok(status)
    }

    fn stop(&self, name: &str, _grace: Duration) -> Status {
        let inner = self.lock();
        let Some(c) = inner.containers.get(name) else {
            return Status::Created;
        };
        if matches!(*c.status.borrow(), Status::Running(_)) {
            c.status.send_replace(Status::Exited(143));
        }
        let status = *c.status.borrow();
        status
    }

    fn watch_exit(&self, name: &str) -> ExitWatch {
        let Some(mut rx) = self
            .lock()
            .containers
            .get(name)
            .map(|c| c.status.subscribe())
        else {
            return Box::pin(std::future::ready(Status::Created));
        };
        Box::pin(async move {
            match rx.wait_for(|s| !matches!(s, Status::Running(_))).await {
                Ok(s) => *s,
                Err(_) => Status::Created,
            }
        })
    }

    fn read_log(&self, name: &str, offset: u64) -> Result<LogRead, ContainerError> {
        let inner = self.lock();
        let log = inner.containers.get(name).map_or(&[][..], |c| &c.log[..]);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        Ok(LogRead {
            text: String::from_utf8_lossy(&log[start..]).into_owned(),
            next_offset: offset.max(log.len() as u64),
        })
    }

    fn remove(&self, name: &str) -> Result<(), ContainerError> {
        self.check(FakeOp::Remove)?;
        self.lock().containers.remove(name);
        Ok(())
    }
}
