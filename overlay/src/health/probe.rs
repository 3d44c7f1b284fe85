//! The probes behind a health check, as one small trait: [`SystemProber`] does them for real
//! (TCP and HTTP from inside the instance's namespace, commands through nsenter, connection
//! counts, on a few namespace threads); [`super::FakeProber`] answers as a test says.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::command;
use super::netns_pool::{NetnsPool, PoolError};
use super::socket_probe;
use super::tcp_table::{count_here, Tally};
use crate::model::Probe;

/// Command checks running at once (each is a process); more wait for a turn.
const COMMANDS_AT_ONCE: usize = 4;
/// Threads starting TCP and HTTP probes inside namespaces (a few microseconds each).
const PROBE_THREADS: usize = 2;
/// Probes waiting for a namespace thread before more fail as busy.
const PROBE_QUEUE: usize = 8192;
/// Threads counting connections inside namespaces (a count may walk the kernel's socket
/// tables: milliseconds; kept apart so probes never wait behind one).
const COUNT_THREADS: usize = 1;
/// Counts waiting for a namespace thread before more are skipped.
const COUNT_QUEUE: usize = 4096;

/// The instance a probe looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Workload name.
    pub name: String,
    /// Its address on the service's network (TCP and HTTP probes connect to it from inside
    /// its namespace).
    pub addr: IpAddr,
    /// Its network namespace file.
    pub netns: PathBuf,
    /// PID 1 of its container, when it is a running container (command checks enter it).
    pub pid: Option<i32>,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the check passed.
    pub passed: bool,
    /// What it said: a command's output, an HTTP status line, or why it failed.
    pub output: String,
}

impl Verdict {
    /// A pass saying `output`.
    pub fn pass(output: impl Into<String>) -> Verdict {
        Verdict {
            passed: true,
            output: output.into(),
        }
    }

    /// A failure saying `output`.
    pub fn fail(output: impl Into<String>) -> Verdict {
        Verdict {
            passed: false,
            output: output.into(),
        }
    }
}

/// Why connections could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// The namespace could not be entered, or no worker took the job.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The namespace's socket tables could not be read.
    #[error("reading the TCP tables of {}: {source}", netns.display())]
    Read {
        /// The namespace file.
        netns: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs probes and counts connections.
#[async_trait]
pub trait Prober: Send + Sync {
    /// Runs `probe` against `target`; answers within `timeout` (plus the time to stop a
    /// command), which callers rely on: they set no timer of their own.
    async fn probe(&self, target: &Target, probe: &Probe, timeout: Duration) -> Verdict;

    /// The established TCP connections to local `port` in the namespace `netns`; `last` is the
    /// previous count of the same, which lets an idle namespace be counted cheaply.
    async fn connections(
        &self,
        netns: &Path,
        port: u16,
        last: Option<Tally>,
    ) -> Result<Tally, CountError>;
}

/// The real probes.
pub struct SystemProber {
    probes: NetnsPool,
    counts: NetnsPool,
    commands: Arc<Semaphore>,
    enter: PathBuf,
    /// A sealed in-memory copy of `enter`, made the first time a container with a root
    /// filesystem of its own is checked by a command (its files must not reach the binary).
    sealed: std::sync::OnceLock<Option<PathBuf>>,
}

impl SystemProber {
    /// Starts its namespace threads; command checks run through `enter` (the agent binary,
    /// whose `enter` subcommand takes the container's capabilities).
    pub fn start(enter: PathBuf) -> Result<SystemProber, PoolError> {
        Ok(SystemProber {
            probes: NetnsPool::start(PROBE_THREADS, PROBE_QUEUE)?,
            counts: NetnsPool::start(COUNT_THREADS, COUNT_QUEUE)?,
            commands: Arc::new(Semaphore::new(COMMANDS_AT_ONCE)),
            enter,
            sealed: std::sync::OnceLock::new(),
        })
    }

    /// What to enter container `pid` with: `enter` itself for a container on the host's
    /// root filesystem, else the sealed copy (or, if it cannot be made, `enter` with a warning).
    fn entering(&self, pid: i32) -> PathBuf {
        if crate::container::sealed::shares_root(pid).unwrap_or(true) {
            return self.enter.clone();
        }
        let sealed = self.sealed.get_or_init(|| {
            match crate::container::sealed::copy_of(&self.enter) {
                Ok(fd) => {
                    let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
                    Some(PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id())))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a sealed copy of the agent for command checks");
                    None
                }
            }
        });
        sealed.clone().unwrap_or_else(|| self.enter.clone())
    }
}

#[async_trait]
impl Prober for SystemProber {
    async fn probe(&self, target: &Target, probe: &Probe, timeout: Duration) -> Verdict {
        let within = |what: &str| format!("{what}: no answer within {} ms", timeout.as_millis());
        match probe {
            Probe::Tcp { port } => {
                let addr = SocketAddr::new(target.addr, *port);
                let check = socket_probe::tcp(&self.probes, &target.netns, addr);
                tokio::time::timeout(timeout, check)
                    .await
                    .unwrap_or_else(|_| Verdict::fail(within(&format!("connect {addr}"))))
            }
            Probe::Http { port, path } => {
                let addr = SocketAddr::new(target.addr, *port);
                let check = socket_probe::http(&self.probes, &target.netns, addr, path);
                tokio::time::timeout(timeout, check)
                    .await
                    .unwrap_or_else(|_| Verdict::fail(within(&format!("GET http://{addr}{path}"))))
            }
            Probe::Cmd { argv } => {
                let Some(pid) = target.pid else {
                    return Verdict::fail(format!(
                        "{}: no running container to enter for a command check",
                        target.name
                    ));
                };
                let Ok(_turn) = self.commands.acquire().await else {
                    return Verdict::fail("command checks are shutting down");
                };
                let enter = self.entering(pid);
                command::run_in_container(&enter, pid, &target.name, argv, timeout).await
            }
        }
    }

    async fn connections(
        &self,
        netns: &Path,
        port: u16,
        last: Option<Tally>,
    ) -> Result<Tally, CountError> {
        let path = netns.to_path_buf();
        self.counts
            .run(netns, move || count_here(port, last))
            .await?
            .map_err(|source| CountError::Read {
                netns: path,
                source,
            })
    }
}
