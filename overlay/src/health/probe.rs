//! The probes behind a health check, as one small trait: [`SystemProber`] does them for real
//! (TCP and HTTP from this namespace over tokio sockets, commands through nsenter, connection
//! counts on a few namespace threads); [`super::FakeProber`] answers as a test says.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::command;
use super::http::{self, MAX_STATUS_LINE};
use super::netns_pool::{NetnsPool, PoolError};
use super::tcp_table::{count_here, Tally};
use crate::model::Probe;

/// Command checks running at once (each is a process); more wait for a turn.
const COMMANDS_AT_ONCE: usize = 4;
/// Threads counting connections inside namespaces.
const COUNT_THREADS: usize = 1;
/// Counts waiting for a namespace thread before more are skipped.
const COUNT_QUEUE: usize = 4096;

/// The instance a probe looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Workload name.
    pub name: String,
    /// Its address on the service's network.
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
    /// Runs `probe` against `target`, answering within about `timeout`.
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
    counts: NetnsPool,
    commands: Arc<Semaphore>,
}

impl SystemProber {
    /// Starts its namespace thread.
    pub fn start() -> Result<SystemProber, PoolError> {
        Ok(SystemProber {
            counts: NetnsPool::start(COUNT_THREADS, COUNT_QUEUE)?,
            commands: Arc::new(Semaphore::new(COMMANDS_AT_ONCE)),
        })
    }
}

#[async_trait]
impl Prober for SystemProber {
    async fn probe(&self, target: &Target, probe: &Probe, timeout: Duration) -> Verdict {
        let within = |what: &str| format!("{what}: no answer within {} ms", timeout.as_millis());
        match probe {
            Probe::Tcp { port } => {
                let addr = SocketAddr::new(target.addr, *port);
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        close_at_once(&stream);
                        Verdict::pass("")
                    }
                    Ok(Err(e)) => Verdict::fail(format!("connect {addr}: {e}")),
                    Err(_) => Verdict::fail(within(&format!("connect {addr}"))),
                }
            }
            Probe::Http { port, path } => {
                let addr = SocketAddr::new(target.addr, *port);
                match tokio::time::timeout(timeout, get(addr, path)).await {
                    Ok(v) => v,
                    Err(_) => Verdict::fail(within(&format!("GET http://{addr}{path}"))),
                }
            }
            Probe::Cmd { argv } => {
                let Some(pid) = target.pid else {
                    return Verdict::fail(format!(
                        "{} is a namespace attached with `shibafu network attach`, not a container: a command check needs a container (use a tcp or http check)",
                        target.name
                    ));
                };
                let Ok(_turn) = self.commands.acquire().await else {
                    return Verdict::fail("command checks are shutting down");
                };
                command::run_in_container(pid, &target.name, argv, timeout).await
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

/// Closes with a reset rather than FIN: no TIME_WAIT left behind per check (as HAProxy's
/// checks do), and nothing more to exchange with the instance.
fn close_at_once(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// One GET: healthy on a 2xx or 3xx status line.
async fn get(addr: SocketAddr, path: &str) -> Verdict {
    let url = format!("http://{addr}{path}");
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Verdict::fail(format!("GET {url}: {e}")),
    };
    if let Err(e) = stream.write_all(&http::request(addr, path)).await {
        return Verdict::fail(format!("GET {url}: {e}"));
    }
    let mut buf = vec![0u8; MAX_STATUS_LINE];
    let mut len = 0;
    let verdict = loop {
        match stream.read(&mut buf[len..]).await {
            Ok(0) => break Verdict::fail(format!("GET {url}: closed before a status line")),
            Ok(n) => len += n,
            Err(e) => break Verdict::fail(format!("GET {url}: {e}")),
        }
        match http::status(&buf[..len]) {
            Ok(None) => continue,
            Ok(Some((code, line))) if http::is_healthy(code) => break Verdict::pass(line),
            Ok(Some((_, line))) => break Verdict::fail(line),
            Err(e) => break Verdict::fail(format!("GET {url}: {e}")),
        }
    };
    close_at_once(&stream);
    verdict
}
