//! The host dataplane at the kernel edge: observe what exists, apply plan ops, with rtnetlink.
//!
//! [`Dataplane`] is what the agent's NetworkActor drives: `observe` then [`crate::plan::plan`]
//! then `apply`, or [`reconcile`] for all three. [`NetlinkDataplane`] is the real one (optionally
//! working on another namespace as "the host", which is how the host-tier tests use it);
//! [`FakeDataplane`] simulates the kernel in memory for unit tests of callers.

mod apply;
mod conn;
mod fake;
mod inspect;
mod observe;
mod parse;
mod sysctl;
mod tunnel_link;
pub mod watch;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use tracing::{debug, warn};

pub use fake::{simulate, FakeDataplane};
pub use inspect::{inspect_host, inspect_namespace};
pub use tunnel_link::{
    configure_tunnel_link, create_wireguard, delete_link, tunnel_link, TunnelLink,
};

use crate::netns::NetnsError;
use crate::plan::{plan, plan_workloads, DesiredHost, ObservedHost, Op};

/// Errors of observing or changing the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// The bridge has no port number left (EXFULL): the Linux bridge takes 1,023 ports.
    #[error(
        "{port}: bridge {bridge} is full: a Linux bridge takes 1,023 ports, so one network \
         holds at most 1,023 containers on a node, 1,022 beside its VXLAN port"
    )]
    BridgeFull {
        /// The bridge.
        bridge: String,
        /// The port that found it full.
        port: String,
    },
    /// A link the op refers to does not exist.
    #[error("no such link: {0}")]
    NoSuchLink(String),
    /// A sysctl could not be read or written.
    #[error("sysctl {}: {source}", key.display())]
    Sysctl {
        /// The /proc/sys path.
        key: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No link carries the underlay address.
    #[error("no interface carries underlay address {0}; check --underlay")]
    NoUnderlay(IpAddr),
    /// The simulated kernel of [`FakeDataplane`] refused an op (or was told to).
    #[error("simulated kernel: {0}")]
    Simulated(String),
}

/// One op that failed, and why.
#[derive(Debug)]
pub struct OpError {
    /// The op.
    pub op: Op,
    /// The error.
    pub error: NetlinkError,
}

/// Outcome of applying a list of ops: every op is tried; failures are collected, not fatal.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Ops that succeeded.
    pub applied: usize,
    /// Ops that failed, in order.
    pub errors: Vec<OpError>,
}

impl ApplyReport {
    /// Did every op succeed?
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What an observation reads and the plan then covers.
///
/// A container left out is left alone by the plan (its veth is neither checked nor touched), so
/// an attach can observe only the one namespace it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole host side and every namespace the desired state names (full resync, start).
    All,
    /// The whole host side and only these namespaces (those the desired state names).
    Only(Vec<PathBuf>),
    /// Only these namespaces and the host ends of their veths: for a caller that knows the host
    /// side (bridges, VXLAN, FDB, neighbours) is as its last clean reconcile left it, so the
    /// cost stays flat however many containers the host runs. See [`plan_workloads`].
    Workloads(Vec<PathBuf>),
}

impl Scope {
    /// The namespaces of `desired` this scope covers.
    pub fn select<'a>(&self, desired: &'a DesiredHost) -> Vec<&'a Path> {
        match self {
            Scope::All => desired.container_netns(),
            Scope::Only(only) | Scope::Workloads(only) => {
                let mut found: Vec<&'a Path> = only
                    .iter()
                    .filter_map(|o| desired.endpoints_in(o).first())
                    .map(|e| e.netns.as_path())
                    .collect();
                found.sort_unstable();
                found.dedup();
                found
            }
        }
    }
}

/// The host dataplane: observe the kernel, apply ops.
#[async_trait]
pub trait Dataplane: Send + Sync {
    /// Reads the host state plus the container namespaces of `desired` within `scope`.
    async fn observe(
        &self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<ObservedHost, NetlinkError>;
    /// Applies `ops` in order, trying every one and reporting each failure.
    async fn apply(&self, ops: &[Op]) -> ApplyReport;
    /// Observes (within `scope`), plans and applies.
    async fn reconcile(
        &self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<Reconciled, NetlinkError> {
        let observed = self.observe(desired, scope).await?;
        let ops = plan_for(desired, &observed, scope);
        let report = self.apply(&ops).await;
        Ok(Reconciled {
            observed,
            ops,
            report,
        })
    }
}

/// What a reconcile read, planned and applied.
#[derive(Debug)]
pub struct Reconciled {
    /// The kernel as observed before applying (within the scope).
    pub observed: ObservedHost,
    /// The ops planned.
    pub ops: Vec<Op>,
    /// How applying them went.
    pub report: ApplyReport,
}

/// The plan of `scope`: [`plan_workloads`] for [`Scope::Workloads`], else [`plan`].
fn plan_for(desired: &DesiredHost, observed: &ObservedHost, scope: &Scope) -> Vec<Op> {
    let ops = match scope {
        Scope::Workloads(_) => plan_workloads(desired, observed),
        _ => plan(desired, observed),
    };
    debug!(?scope, ops = ops.len(), "observed and planned");
    ops
}

/// Observes (within `scope`), plans and applies; returns the ops and how applying them went.
pub async fn reconcile(
    dp: &dyn Dataplane,
    desired: &DesiredHost,
    scope: &Scope,
) -> Result<(Vec<Op>, ApplyReport), NetlinkError> {
    dp.reconcile(desired, scope)
        .await
        .map(|r| (r.ops, r.report))
}

/// The real dataplane, with rtnetlink, in the current network namespace or in another one
/// treated as the host.
#[derive(Debug, Clone, Default)]
pub struct NetlinkDataplane {
    host_netns: Option<PathBuf>,
}

impl NetlinkDataplane {
    /// Works on the caller's own network namespace (the agent's case).
    pub fn current() -> NetlinkDataplane {
        NetlinkDataplane { host_netns: None }
    }

    /// Works on the network namespace at `path` as the host (tests, labs).
    pub fn in_netns(path: impl Into<PathBuf>) -> NetlinkDataplane {
        NetlinkDataplane {
            host_netns: Some(path.into()),
        }
    }

    fn host(&self) -> Option<&Path> {
        self.host_netns.as_deref()
    }

    /// MTU of the interface that carries `underlay` (the overlay MTU is derived from it).
    pub async fn underlay_mtu(&self, underlay: IpAddr) -> Result<u32, NetlinkError> {
        let conn = conn::connect(self.host()).await?;
        let addrs: Vec<_> = conn
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Netlink {
                what: "dump addresses".into(),
                source,
            })?;
        let index = addrs
            .iter()
            .find(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == underlay))
            })
            .map(|m| m.header.index)
            .ok_or(NetlinkError::NoUnderlay(underlay))?;
        let links = conn::dump_links(&conn.handle).await?;
        links
            .iter()
            .find(|l| l.header.index == index)
            .map(|l| parse::parse_link(l, &Default::default()).mtu)
            .ok_or(NetlinkError::NoUnderlay(underlay))
    }
}

impl NetlinkDataplane {
    async fn observe_in(
        &self,
        session: &apply::Session<'_>,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<(ObservedHost, observe::ContainerConns), NetlinkError> {
        let handle = session.host_handle();
        let netns = scope.select(desired);
        match scope {
            Scope::Workloads(_) => observe::observe_workloads(handle, desired, &netns).await,
            Scope::Only(_) => observe::observe(handle, self.host(), &netns, true).await,
            Scope::All => observe::observe(handle, self.host(), &netns, false).await,
        }
    }
}

/// Applies `ops` in order in `session`, trying every one.
async fn apply_all(session: &mut apply::Session<'_>, ops: &[Op]) -> ApplyReport {
    let mut report = ApplyReport::default();
    for op in ops {
        match session.apply(op).await {
            Ok(()) => {
                debug!(%op, "applied");
                report.applied += 1;
            }
            Err(error) => {
                warn!(%op, %error, "dataplane op failed");
                report.errors.push(OpError {
                    op: op.clone(),
                    error,
                });
            }
        }
    }
    report
}

#[async_trait]
impl Dataplane for NetlinkDataplane {
    async fn observe(
        &self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<ObservedHost, NetlinkError> {
        let session = apply::Session::open(self.host()).await?;
        Ok(self.observe_in(&session, desired, scope).await?.0)
    }

    async fn apply(&self, ops: &[Op]) -> ApplyReport {
        if ops.is_empty() {
            return ApplyReport::default();
        }
        match apply::Session::open(self.host()).await {
            Ok(mut session) => apply_all(&mut session, ops).await,
            Err(e) => {
                let msg = e.to_string();
                let errors = ops
                    .iter()
                    .map(|op| OpError {
                        op: op.clone(),
                        error: NetlinkError::Socket(std::io::Error::other(msg.clone())),
                    })
                    .collect();
                ApplyReport { applied: 0, errors }
            }
        }
    }

    /// One host connection for observing and applying, and the container connections the
    /// observation opened are reused by the ops in those namespaces.
    async fn reconcile(
        &self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<Reconciled, NetlinkError> {
        let mut session = apply::Session::open(self.host()).await?;
        let (observed, conns) = self.observe_in(&session, desired, scope).await?;
        let ops = plan_for(desired, &observed, scope);
        for (netns, conn) in conns {
            session.adopt(netns, conn);
        }
        let report = apply_all(&mut session, &ops).await;
        Ok(Reconciled {
            observed,
            ops,
            report,
        })
    }
}
