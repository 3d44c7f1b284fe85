//! DnsActor: every network's DNS server on this node. It keeps the projection of the cluster to
//! DNS (`overlay::dns::projection`), re-projects only the networks a change touches, and swaps
//! the new snapshot in (the packet path never waits on it); changes that arrive together are
//! folded into one rebuild, made once the current message handling has yielded (so an attach's
//! answer goes out first) and paced like the dataplane's passes, more patiently ([`Pace`]: after
//! a rebuild the next waits nine times its length, so a stream of changes over thousands of
//! names costs at most a tenth of a core). The agent runs it on a thread of its own. It keeps
//! one server per network listening on the network's gateway addresses, port 53, UDP and TCP,
//! forwarding other names to the network's forwarders, then the node's upstreams. Listeners are
//! changed by diff: a network whose gateway and forwarders are unchanged keeps its sockets. This
//! node's own endpoints come from the local registry ([`LocalChanged`]), the other nodes' from
//! the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;
use imbl::ordmap::DiffItem;
use shibafu_overlay::dns::authority::Authority;
use shibafu_overlay::dns::forward::{ForwardConfig, Forwarder};
use shibafu_overlay::dns::projection::{Projection, View};
use shibafu_overlay::dns::{bind_tcp, bind_udp, DnsServer, ServerConfig, Snapshot};
use shibafu_overlay::model::{admit, Endpoint, Network};
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::telemetry::{follow, Trace};
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Span};

use shibafu_overlay::api::ApiError;
use shibafu_overlay::dns::trace::DnsTrace;

use crate::messages::{ClusterChanged, LocalChanged, TraceDns};
use crate::metrics::DnsServers;
use crate::pace::Pace;
use crate::registry::book::Entry;
use crate::registry::LocalWorkloads;

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

/// Networks waiting to be re-projected.
#[derive(Debug, Default)]
enum Pending {
    /// Nothing.
    #[default]
    Nothing,
    /// These networks.
    Some(BTreeSet<String>),
    /// Every network.
    All,
}

impl Pending {
    fn add(&mut self, networks: impl IntoIterator<Item = String>) {
        match self {
            Pending::All => {}
            Pending::Some(set) => set.extend(networks),
            Pending::Nothing => *self = Pending::Some(networks.into_iter().collect()),
        }
    }
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
        match networks {
            Pending::Nothing => return,
            Pending::All => self.pending = Pending::All,
            Pending::Some(set) => self.pending.add(set),
        }
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
            Pending::Some(set) => Some(set),
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
                network = %touched.iter().flatten().cloned().collect::<Vec<_>>().join(","),
                changes = traces.len(),
            );
            follow(&span, &traces);
            span
        };
        let _in_span = span.enter();
        let endpoints_of = endpoints_with_local(&state, &self.node, self.local.as_deref());
        let scope = local_networks(&state, &self.node, self.local.as_deref());
        let same = (self.projection.scope())
            .is_some_and(|s| s.iter().map(String::as_str).eq(scope.iter().copied()));
        let rescoped = !same
            && (self.projection).set_scope(Some(scope.into_iter().map(str::to_string).collect()));
        let changed = self
            .projection
            .update(&state, touched.as_ref(), &endpoints_of);
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
                    networks = touched.as_ref().map(BTreeSet::len),
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

/// A network's endpoints: this node's (`node`) from the registry once it is known (`local`),
/// so they answer before etcd echoes them; the others' (and, before that, all) from the cluster.
/// The networks this node's workloads are on (from the registry once it is known, else from the
/// cluster's records of this node): the only ones whose names anyone asks this node's DNS for.
fn local_networks<'a>(
    state: &'a ClusterState,
    node: &str,
    local: Option<&'a LocalWorkloads>,
) -> BTreeSet<&'a str> {
    match local {
        Some(local) => local
            .values()
            .flat_map(|w| w.endpoints())
            .map(|e| e.network.as_str())
            .collect(),
        None => state
            .endpoints()
            .values()
            .filter(|e| e.node == node)
            .map(|e| e.network.as_str())
            .collect(),
    }
}

fn endpoints_with_local<'a>(
    state: &'a ClusterState,
    node: &'a str,
    local: Option<&'a LocalWorkloads>,
) -> impl Fn(&Network) -> Vec<&'a Endpoint> + 'a {
    move |n| match local {
        None => state.endpoints_of(&n.name).collect(),
        Some(local) => {
            let name = n.name.clone();
            state
                .endpoints_of(&n.name)
                .filter(|e| e.node != node)
                .chain(
                    local
                        .values()
                        .flat_map(|w| w.endpoints())
                        .filter(move |e| e.network == name),
                )
                .collect()
        }
    }
}

/// The networks whose records `changes` may change: all of them for a whole listing (no
/// changes listed), else those named by the changes that concern DNS; nothing when none does
/// (this node's own endpoints coming back from etcd, say: nothing to re-project).
fn touched_by(changes: &[StateChange], node: &str, book_known: bool) -> Pending {
    if changes.is_empty() {
        return Pending::All;
    }
    let networks: BTreeSet<String> = changes
        .iter()
        .filter(|c| !leaves_dns(c, node, book_known))
        .flat_map(StateChange::networks)
        .map(str::to_string)
        .collect();
    if networks.is_empty() {
        Pending::Nothing
    } else {
        Pending::Some(networks)
    }
}

/// Does `change` leave the snapshot as it is? Nodes, IPAM blocks, problem reports,
/// policies, coordinators, tunnels and key rotations are not in an agent's DNS, and once the registry is known (`book_known`) this node's (`node`) endpoints come from
/// it, not from the cluster (the watch echoing an attach would otherwise rebuild a second time).
fn leaves_dns(change: &StateChange, node: &str, book_known: bool) -> bool {
    match change {
        StateChange::Endpoint(_) => book_known && change.is_endpoint_of(node),
        StateChange::Node(_)
        | StateChange::Block(_)
        | StateChange::Problem(_)
        | StateChange::Policy(_)
        | StateChange::Coordinator(_)
        | StateChange::Tunnel(_)
        | StateChange::Rotation(_) => true,
        StateChange::Network(_)
        | StateChange::Link(_)
        | StateChange::Service(_)
        | StateChange::Health(_) => false,
    }
}

impl Handler<LocalChanged> for DnsActor {
    type Result = ();

    fn handle(&mut self, msg: LocalChanged, ctx: &mut Context<Self>) {
        let touched = match &self.local {
            None => Pending::All,
            Some(old) => Pending::Some(changed_networks(old, &msg.0)),
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

/// Networks whose endpoints differ between two sets of local workloads (the workloads both
/// share are not visited: an attach among 1,000 workloads looks at one).
fn changed_networks(old: &LocalWorkloads, new: &LocalWorkloads) -> BTreeSet<String> {
    let index = |w: &Entry| -> BTreeMap<(String, String), Endpoint> {
        w.endpoints()
            .map(|e| ((e.network.clone(), e.id.clone()), e.clone()))
            .collect()
    };
    let mut networks = BTreeSet::new();
    for item in old.diff(new) {
        let (old, new) = match item {
            DiffItem::Add(_, w) => (BTreeMap::new(), index(w)),
            DiffItem::Remove(_, w) => (index(w), BTreeMap::new()),
            DiffItem::Update { old, new } => (index(old.1), index(new.1)),
        };
        networks.extend(
            old.keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k))
                .map(|(network, _)| network.clone()),
        );
    }
    networks
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

    #[test]
    fn local_changes_touch_the_networks_of_the_workloads_that_changed() {
        use crate::testing::{endpoint, workload};
        let book = |w: &[Entry]| -> LocalWorkloads {
            w.iter().map(|e| (e.name.clone(), e.clone())).collect()
        };
        let api = workload("api", &[endpoint("backend", "api", "node1", "172.22.0.2")]);
        let web = workload("web", &[endpoint("frontend", "web", "node1", "172.21.0.2")]);
        let old = book(&[api.clone(), web.clone()]);
        let set = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(changed_networks(&old, &old.clone()), set(&[]));
        let mut new = old.clone();
        new.insert(
            "db".into(),
            workload("db", &[endpoint("data", "db", "node1", "172.23.0.2")]),
        );
        assert_eq!(changed_networks(&old, &new), set(&["data"]));
        let moved = workload(
            "api",
            &[
                endpoint("backend", "api", "node1", "172.22.0.2"),
                endpoint("frontend", "api", "node1", "172.21.0.3"),
            ],
        );
        new = old.update("api".into(), moved);
        assert_eq!(
            changed_networks(&old, &new),
            set(&["frontend"]),
            "backend's record is the same"
        );
        new = old.without("web");
        assert_eq!(changed_networks(&old, &new), set(&["frontend"]));
    }

    #[test]
    fn an_echo_of_this_nodes_endpoints_schedules_no_update() {
        let own = StateChange::Endpoint(Change::Added(ep("node1")));
        let other = StateChange::Endpoint(Change::Added(ep("node2")));
        assert!(matches!(
            touched_by(std::slice::from_ref(&own), "node1", true),
            Pending::Nothing
        ));
        assert!(matches!(touched_by(&[], "node1", true), Pending::All));
        match touched_by(&[own.clone(), other], "node1", true) {
            Pending::Some(set) => assert_eq!(set, BTreeSet::from(["frontend".to_string()])),
            _ => panic!("another node's endpoint touches its network"),
        }
        assert!(matches!(
            touched_by(&[own], "node1", false),
            Pending::Some(_)
        ));
    }
}
