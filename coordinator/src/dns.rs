//! The coordinator's DNS: every network zone of the cluster with the cluster-wide view, from the
//! same projection and engine the agents use, its SOA and NS naming the live coordinators.
//! Names outside the cluster zones are REFUSED (no forwarder: not an open resolver).
//!
//! [`follow`] keeps a `ClusterState` from the resilient watch of `/shibafu/v1/` (which re-lists
//! after compaction), re-projects only the networks a change touches (in place by the endpoint
//! ids an endpoint change names, as the agents do), rebuilds the authority of
//! every zone when the live coordinators change, and swaps the new snapshot in: queries read
//! the previous one meanwhile and never wait.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::{FutureExt, StreamExt};
use shibafu_overlay::dns::authority::Authority;
use shibafu_overlay::dns::projection::{Projection, Touched, View};
use shibafu_overlay::dns::{bind_tcp, bind_udp, DnsError, DnsServer, ServerConfig, Snapshot};
use shibafu_overlay::model::Network;
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Prefix;
use shibafu_overlay::store::{watch_changes, ClusterChange, Store};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::metrics::CoordinatorMetrics;

/// Most watch items already waiting that are folded into one rebuild.
const MAX_BATCH: usize = 256;

/// What the next rebuild must redo.
#[derive(Debug, Default)]
struct Dirty {
    /// Every network (the first state).
    all: bool,
    /// These networks, wholly or at the endpoints named.
    networks: BTreeMap<String, Touched>,
}

/// The cluster as DNS sees it, and the snapshot published from it.
pub struct ClusterDns {
    state: ClusterState,
    projection: Projection,
    authority: Authority,
    dirty: Dirty,
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl ClusterDns {
    /// Publishes into `snapshot` (empty until the first state: every query REFUSED).
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> ClusterDns {
        ClusterDns {
            state: ClusterState::new(),
            projection: Projection::new(),
            authority: Authority::default(),
            dirty: Dirty {
                all: true,
                ..Dirty::default()
            },
            snapshot,
        }
    }

    /// Takes one item of the watch into the state, noting what the next rebuild must redo.
    pub fn apply(&mut self, change: &ClusterChange) {
        // The authority (the coordinators) is compared whole at publish.
        for c in self.state.apply(change) {
            if c.projects_to_dns() {
                Touched::note_change(&mut self.dirty.networks, &c);
            }
        }
    }

    /// Re-projects what changed and swaps the new snapshot in; nothing when DNS is unchanged.
    /// A snapshot that cannot be built is logged and the previous one kept.
    pub fn publish(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let authority = Authority::of_coordinators(self.state.coordinators().values());
        let authority_changed = authority != self.authority;
        if !dirty.all && dirty.networks.is_empty() && !authority_changed {
            return;
        }
        let state = &self.state;
        if dirty.all || !dirty.networks.is_empty() {
            let touched = (!dirty.all).then_some(&dirty.networks);
            let endpoints_of = |n: &Network| state.endpoints_of(&n.name).collect();
            let with_id = |n: &Network, id: &str| state.endpoint(&n.name, id).into_iter().collect();
            (self.projection).update_by_id(state, touched, &endpoints_of, &with_id);
        }
        if authority_changed {
            let servers: Vec<&str> = authority
                .servers()
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            info!(?servers, "name servers of the cluster zones changed");
            self.authority = authority;
        }
        let previous = self.snapshot.load();
        match self
            .projection
            .next_snapshot(&previous, View::Cluster, &self.authority)
        {
            Ok(snap) => {
                debug!(
                    names = snap.name_count(),
                    encoded = snap.names_encoded(),
                    revision = state.revision(),
                    networks = dirty.networks.len(),
                    all = dirty.all,
                    "DNS snapshot swapped"
                );
                self.snapshot.store(Arc::new(snap));
            }
            Err(e) => {
                warn!(error = %e, "cannot build the DNS snapshot; still answering from the previous one");
            }
        }
    }
}

/// Follows the cluster in `store` into `snapshot` (and the state into `gauges`, when given)
/// until `stop` completes. Items of the watch already waiting are folded into one rebuild.
pub async fn follow(
    store: Arc<dyn Store>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    gauges: Option<Arc<CoordinatorMetrics>>,
    stop: impl Future<Output = ()>,
) {
    let mut changes = watch_changes(store, Prefix::All.to_string(), None);
    let mut dns = ClusterDns::new(snapshot);
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            next = changes.next() => next,
            () = &mut stop => return,
        };
        let Some(change) = next else {
            warn!("cluster watch ended; DNS answers from the last state");
            return;
        };
        dns.apply(&change);
        for _ in 0..MAX_BATCH {
            match changes.next().now_or_never() {
                Some(Some(change)) => dns.apply(&change),
                _ => break,
            }
        }
        dns.publish();
        if let Some(m) = &gauges {
            m.cluster.publish(Arc::new(dns.state.clone()));
        }
    }
}

/// Sockets bound for the DNS server: UDP and TCP on one address.
pub struct DnsSockets {
    udp: std::net::UdpSocket,
    tcp: TcpListener,
}

impl DnsSockets {
    /// Binds UDP on `addr`, then TCP on the same address and port (port 0: a free one).
    pub fn bind(addr: SocketAddr) -> Result<DnsSockets, DnsError> {
        let udp = bind_udp(addr)?;
        let bound = udp.local_addr().map_err(|source| DnsError::Io {
            what: format!("read the address bound for {addr}"),
            source,
        })?;
        let tcp = bind_tcp(bound)?;
        Ok(DnsSockets { udp, tcp })
    }

    /// The UDP address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// The cluster-wide server: answers from `snapshot`, no forwarder.
pub fn server(snapshot: Arc<ArcSwap<Snapshot>>) -> DnsServer {
    DnsServer::new(snapshot, None, ServerConfig::default())
}

/// Answers with `server` on `sockets` until `stop` completes.
pub async fn serve(
    sockets: DnsSockets,
    server: DnsServer,
    stop: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    server.run(vec![sockets.udp], vec![sockets.tcp], stop).await
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
