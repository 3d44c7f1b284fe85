//! DnsActor: every network's DNS server on this node. It rebuilds the cluster snapshot on each
//! change and swaps it in (the packet path never waits on it), and keeps one server per network
//! listening on the network's gateway addresses, port 53, UDP and TCP, forwarding other names to
//! the network's forwarders, then the node's upstreams. Listeners are changed by diff: a network
//! whose gateway and forwarders are unchanged keeps its sockets. This node's own endpoints come
//! from the NetworkActor's book ([`LocalEndpoints`]), the other nodes' from the cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;
use shibafu_overlay::dns::forward::{ForwardConfig, Forwarder};
use shibafu_overlay::dns::{
    bind_tcp, bind_udp, DnsServer, ServerConfig, Snapshot, SnapshotBuilder,
};
use shibafu_overlay::model::{Endpoint, Network};
use shibafu_overlay::state::{ClusterState, StateChange};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::dns_zones::build_snapshot;
use crate::messages::{ClusterChanged, LocalEndpoints};

/// What a network's server listens on and forwards to; a change restarts that server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listen {
    addrs: Vec<IpAddr>,
    forwarders: Vec<SocketAddr>,
}

struct Running {
    listen: Listen,
    stop: oneshot::Sender<()>,
}

/// The actor; see the module documentation.
pub struct DnsActor {
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstreams: Vec<SocketAddr>,
    port: u16,
    servers: BTreeMap<String, Running>,
    node: String,
    /// This node's endpoints from its book; `None` until the NetworkActor first sends them.
    local: Option<Vec<Endpoint>>,
    state: Option<Arc<ClusterState>>,
}

impl DnsActor {
    /// The actor of node `node`, forwarding to the node's `upstreams` (after each network's own
    /// forwarders).
    pub fn new(node: String, upstreams: Vec<SocketAddr>, port: u16) -> DnsActor {
        let empty = SnapshotBuilder::new().build().unwrap_or_default();
        DnsActor {
            snapshot: Arc::new(ArcSwap::from_pointee(empty)),
            upstreams,
            port,
            servers: BTreeMap::new(),
            node,
            local: None,
            state: None,
        }
    }

    fn rebuild(&self) {
        let Some(state) = &self.state else {
            return;
        };
        match build_snapshot(state, &self.node, self.local.as_deref()) {
            Ok(snap) => {
                debug!(
                    names = snap.name_count(),
                    revision = state.revision(),
                    local = self.local.as_ref().map(Vec::len),
                    "DNS snapshot swapped"
                );
                self.snapshot.store(Arc::new(snap));
            }
            Err(e) => {
                warn!(error = %e, "cannot build the DNS snapshot; still answering from the previous one")
            }
        }
    }

    fn listen_of(&self, n: &Network) -> Listen {
        let mut addrs = vec![IpAddr::V4(n.gateway())];
        addrs.extend(n.gateway6().map(IpAddr::V6));
        let mut forwarders = n.forwarders.clone();
        forwarders.extend(self.upstreams.iter().filter(|u| !n.forwarders.contains(u)));
        Listen { addrs, forwarders }
    }

    fn start_server(&self, network: &str, listen: &Listen) -> Option<oneshot::Sender<()>> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for ip in &listen.addrs {
            let at = SocketAddr::new(*ip, self.port);
            match (bind_udp(at), bind_tcp(at)) {
                (Ok(u), Ok(t)) => {
                    udp.push(u);
                    tcp.push(t);
                }
                (Err(e), _) | (_, Err(e)) => {
                    warn!(network, addr = %at, error = %e, "cannot listen for DNS");
                    return None;
                }
            }
        }
        let forwarder = (!listen.forwarders.is_empty()).then(|| {
            Forwarder::new(ForwardConfig {
                upstreams: listen.forwarders.clone(),
                ..Default::default()
            })
        });
        let server = DnsServer::new(self.snapshot.clone(), forwarder, ServerConfig::default());
        let (tx, rx) = oneshot::channel::<()>();
        let name = network.to_string();
        actix_rt::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = server.run(udp, tcp, stopped).await {
                warn!(network = %name, error = %e, "DNS server stopped");
            }
        });
        info!(network, addrs = ?listen.addrs, forwarders = ?listen.forwarders, "DNS listening");
        Some(tx)
    }

    fn reconcile_servers(&mut self, state: &ClusterState) {
        let wanted: BTreeMap<String, Listen> = state
            .networks()
            .values()
            .map(|n| (n.name.clone(), self.listen_of(n)))
            .collect();
        let stale: Vec<String> = self
            .servers
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&r.listen))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.servers.remove(&name) {
                let _ = r.stop.send(());
                info!(network = %name, "DNS listener stopped");
            }
        }
        for (name, listen) in wanted {
            if self.servers.contains_key(&name) {
                continue;
            }
            if let Some(stop) = self.start_server(&name, &listen) {
                self.servers.insert(name, Running { listen, stop });
            }
        }
    }
}

impl Actor for DnsActor {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, _ctx: &mut Context<Self>) {
        let book_known = self.local.is_some();
        let unchanged = !msg.changes.is_empty()
            && msg
                .changes
                .iter()
                .all(|c| leaves_dns(c, &self.node, book_known));
        self.state = Some(msg.state.clone());
        if !unchanged {
            self.rebuild();
        }
        self.reconcile_servers(&msg.state);
    }
}

/// Does `change` leave the snapshot as it is? IPAM blocks are not in DNS, and once the book is
/// known (`book_known`) this node's (`node`) endpoints come from it, not from the cluster (the
/// watch echoing an attach would otherwise rebuild the snapshot a second time).
fn leaves_dns(change: &StateChange, node: &str, book_known: bool) -> bool {
    let own = |e: &Endpoint| book_known && e.node == node;
    match change {
        StateChange::Endpoint(c) => c.values().all(own),
        StateChange::Block(_) | StateChange::Problem(_) => true,
        _ => false,
    }
}

impl Handler<LocalEndpoints> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: LocalEndpoints, _ctx: &mut Context<Self>) {
        if self.local.as_ref() != Some(&msg.0) {
            self.local = Some(msg.0);
            self.rebuild();
        }
    }
}

#[cfg(test)]
mod tests {
    use shibafu_overlay::state::Change;

    use super::*;

    fn ep(node: &str) -> Endpoint {
        Endpoint::new("frontend", "api", node, "172.21.0.2".parse().expect("ip"))
    }

    #[test]
    fn only_own_endpoints_and_blocks_leave_the_snapshot_alone() {
        let own = StateChange::Endpoint(Change::Added(ep("node1")));
        let other = StateChange::Endpoint(Change::Added(ep("node2")));
        assert!(leaves_dns(&own, "node1", true));
        assert!(
            !leaves_dns(&own, "node1", false),
            "before the book, from etcd"
        );
        assert!(!leaves_dns(&other, "node1", true));
        let moved = StateChange::Endpoint(Change::Updated {
            old: ep("node1"),
            new: ep("node2"),
        });
        assert!(!leaves_dns(&moved, "node1", true));
        let net = StateChange::Network(Change::Added(Network::new(
            "b",
            "172.22.0.0/24".parse().expect("net"),
            1,
        )));
        assert!(!leaves_dns(&net, "node1", true));
    }
}
