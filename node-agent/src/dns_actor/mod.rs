//! DnsActor: every network's DNS server on this node. It keeps the projection of the cluster to
//! DNS (`overlay::dns::projection`), re-projects only the networks a change touches (only the
//! endpoints it names, when it names them: [`touched`]), and swaps the new snapshot in (the
//! packet path never waits on it); changes that arrive together are folded into one rebuild,
//! made once the current message handling has yielded (so an attach's answer goes out first)
//! and paced like the dataplane's passes, more patiently ([`Pace`]: after a rebuild the next
//! waits nine times its length, so a stream of changes over thousands of names costs at most a
//! tenth of a core). The agent runs it on a thread of its own. It keeps one server per network
//! listening on the network's gateway addresses, port 53, UDP and TCP, forwarding other names to
//! the network's forwarders, then the node's upstreams. Listeners are changed by diff: a network
//! whose gateway and forwarders are unchanged keeps its sockets. This node's own endpoints come
//! from the local registry ([`LocalChanged`], indexed in [`local`]), the other nodes' from the
//! cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;
use shibafu_overlay::dns::authority::Authority;
use shibafu_overlay::dns::forward::{ForwardConfig, Forwarder};
use shibafu_overlay::dns::projection::{Projection, View};
use shibafu_overlay::dns::{bind_tcp, bind_udp, DnsServer, ServerConfig, Snapshot};
use shibafu_overlay::model::{admit, Network};
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::telemetry::{follow, Trace};
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Span};

use shibafu_overlay::api::ApiError;
use shibafu_overlay::dns::trace::DnsTrace;

use crate::messages::{ClusterChanged, LocalChanged, TraceDns};
use crate::metrics::DnsServers;
use crate::pace::Pace;
use crate::registry::LocalWorkloads;

mod local;
mod touched;

use local::{endpoints_with_local, networks_of_node, with_id_local, LocalIndex};
use touched::{touched_by, Pending};

/// After a rebuild the next waits this many times its length: a stream of changes over
/// thousands of names costs at most a tenth of a core, left to the attaches that make them.
const DNS_PACE: u32 = 9;

/// What a network's server listens on and forwards to; a change restarts that server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listen {
    addrs: Vec<IpAddr>,
    forwarders: Vec<SocketAddr>,
}

struct Running {
    listen: Listen,
    stop: oneshot::Sender<()>,
    /// The server, for traces.
    server: DnsServer,
}

/// The actor; see the module documentation.
pub struct DnsActor {
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstreams: Vec<SocketAddr>,
    port: u16,
    servers: BTreeMap<String, Running>,
    node: String,
    /// This node's workloads from the registry; `None` until it first sends them.
    local: Option<Arc<LocalWorkloads>>,
    /// Their endpoints by network and id.
    index: LocalIndex,
    state: Option<Arc<ClusterState>>,
    projection: Projection,
    pending: Pending,
    /// Traces of the changes folded into the next rebuild.
    traces: Vec<Trace>,
    /// A rebuild is scheduled.
    scheduled: bool,
    /// The last rebuild, to pace the next.
    last: Pace,
    /// Where the running servers are listed for scrapes.
    metrics: Arc<DnsServers>,
    /// The servers are looked at on the next change whatever it is: none looked at yet, or
    /// one the networks call for did not start (its gateway address not up yet, say). Else
    /// only a change of the networks moves them.
    servers_due: bool,
}

impl DnsActor {
    /// The actor of node `node`, forwarding to the node's `upstreams` (after each network's own
    /// forwarders).
    pub fn new(node: String, upstreams: Vec<SocketAddr>, port: u16) -> DnsActor {
        DnsActor {
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            upstreams,
            port,
            servers: BTreeMap::new(),
            node,
            local: None,
            index: LocalIndex::default(),
            state: None,
            projection: Projection::new(),
            pending: Pending::All,
            traces: Vec::new(),
            scheduled: false,
            last: Pace::with_factor(DNS_PACE),
            metrics: Arc::default(),
            servers_due: true,
        }
    }

    /// Lists the running servers in `metrics` (scraped by `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<DnsServers>) -> DnsActor {
        self.metrics = metrics;
        self
    }

    /// Folds a change into the next rebuild, scheduling one if none is.
    fn touch(&mut self, networks: Pending, ctx: &mut Context<Self>) {
        if matches!(networks, Pending::Nothing) {
            return;
        }
        self.pending.add(networks);
        if self.scheduled {
            return;
        }
        self.scheduled = true;
        let wait = self.last.wait();
        let later = async move {
            if wait.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(wait).await;
            }
        };
        ctx.spawn(later.into_actor(self).map(|(), act, _| {
            act.scheduled = false;
            act.rebuild();
        }));
    }

    fn rebuild(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let started = std::time::Instant::now();
        let touched = match std::mem::take(&mut self.pending) {
            Pending::Nothing => return,
            Pending::Some(networks) => Some(networks),
            Pending::All => None,
        };
        let traces = std::mem::take(&mut self.traces);
        let span = if traces.is_empty() {
            Span::none()
        } else {
            let span = info_span!(
                "dns.update",
                node = %self.node,
                revision = state.revision(),
                network = %touched.iter().flat_map(BTreeMap::keys).cloned().collect::<Vec<_>>().join(","),
                changes = traces.len(),
            );
            follow(&span, &traces);
            span
        };
        let _in_span = span.enter();
        let local = self.local.as_deref();
        let endpoints_of = endpoints_with_local(&state, &self.node, local);
        let with_id = with_id_local(&state, &self.node, local.map(|l| (l, &self.index)));
        let scope = match local {
            Some(_) => self.index.networks().collect(),
            None => networks_of_node(&state, &self.node),
        };
        let same = (self.projection.scope())
            .is_some_and(|s| s.iter().map(String::as_str).eq(scope.iter().copied()));
        let rescoped = !same
            && (self.projection).set_scope(Some(scope.into_iter().map(str::to_string).collect()));
        let changed =
            (self.projection).update_by_id(&state, touched.as_ref(), &endpoints_of, &with_id);
        if !changed && !rescoped {
            debug!(
                revision = state.revision(),
                "no network of this node's workloads changed"
            );
            return;
        }
        let previous = self.snapshot.load();
        let next = self
            .projection
            .next_snapshot(&previous, View::Members, &Authority::default());
        match next {
            Ok(snap) => {
                debug!(
                    names = snap.name_count(),
                    encoded = snap.names_encoded(),
                    micros = started.elapsed().as_micros(),
                    revision = state.revision(),
                    networks = touched.as_ref().map(BTreeMap::len),
                    "DNS snapshot swapped"
                );
                self.snapshot.store(Arc::new(snap));
                self.metrics.updated(started.elapsed());
                self.last.record(started.elapsed());
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

    fn start_server(
        &self,
        network: &str,
        listen: &Listen,
    ) -> Option<(oneshot::Sender<()>, DnsServer)> {
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
        let traced = server.clone();
        self.metrics.insert(network, server.clone());
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
        Some((tx, traced))
    }

    fn reconcile_servers(&mut self, state: &ClusterState) {
        let wanted: BTreeMap<String, Listen> = admit(state.networks().values())
            .0
            .into_iter()
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
                self.metrics.remove(&name);
                info!(network = %name, "DNS listener stopped");
            }
        }
        self.servers_due = false;
        for (name, listen) in wanted {
            if self.servers.contains_key(&name) {
                continue;
            }
            if let Some((stop, server)) = self.start_server(&name, &listen) {
                self.servers.insert(
                    name,
                    Running {
                        listen,
                        stop,
                        server,
                    },
                );
            } else {
                self.servers_due = true;
            }
        }
    }
}

impl Actor for DnsActor {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, ctx: &mut Context<Self>) {
        let touched = touched_by(&msg.changes, &self.node, self.local.is_some());
        self.state = Some(msg.state.clone());
        if !matches!(touched, Pending::Nothing) {
            self.traces.extend(msg.traces());
        }
        self.touch(touched, ctx);
        let networks = msg
            .changes
            .iter()
            .any(|c| matches!(c, StateChange::Network(_)));
        if networks || self.servers_due {
            self.reconcile_servers(&msg.state);
        }
    }
}

impl Handler<LocalChanged> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: LocalChanged, ctx: &mut Context<Self>) {
        let touched = match &self.local {
            None => {
                self.index = LocalIndex::of(&msg.0);
                Pending::All
            }
            Some(old) => Pending::of(self.index.follow(old, &msg.0)),
        };
        self.local = Some(msg.0);
        self.touch(touched, ctx);
    }
}

impl Handler<TraceDns> for DnsActor {
    type Result = ResponseFuture<Result<DnsTrace, ApiError>>;

    /// Traces the query through the network's server (the engine its containers ask).
    fn handle(&mut self, msg: TraceDns, _: &mut Context<Self>) -> Self::Result {
        let server = self.servers.get(&msg.network).map(|r| r.server.clone());
        Box::pin(async move {
            let Some(server) = server else {
                return Err(ApiError::not_found(format!(
                    "network {} has no DNS server on this node (is it created? see `shibafu network ls`)",
                    msg.network
                )));
            };
            server
                .trace(&msg.query, msg.qtype, msg.client)
                .await
                .map_err(|e| ApiError::invalid(e.to_string()))
        })
    }
}
