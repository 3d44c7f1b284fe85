//! StoreActor: the agent's link to the cluster store.
//!
//! It connects (retrying until etcd answers), registers this node under a lease and keeps the
//! lease alive, re-registering the node and every key it owns whenever etcd lost the lease. It
//! runs the resilient watch over `/shibafu/v1/`, keeps the typed `ClusterState`, and sends
//! [`ClusterChanged`] to its subscribers. While etcd is unreachable it keeps serving its last
//! state and catches up when etcd returns. Handlers never wait: I/O is spawned and its result
//! comes back as a message.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use shibafu_overlay::model::Node;
use shibafu_overlay::state::{Change, ClusterState, StateChange};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{watch_changes, ClusterChange, Store, StoreError};
use tracing::{debug, info, warn};

mod requests;
mod rewrite;

use crate::messages::ClusterChanged;
use crate::metrics::StoreMetrics;
use shibafu_overlay::store::lease::{self, bounded, Owned};

/// Opens a connection to the store (etcd in the daemon, a memory store in tests).
pub type Connector =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Store>, StoreError>> + Send + Sync>;

/// Longest wait between two connection attempts.
const MAX_CONNECT_DELAY: Duration = Duration::from_secs(5);
/// Upper bound of one store call made by the actor: longer than the etcd store's own per-call
/// timeout (5 s), so that its clean-up (dropping a dead keepalive stream) runs first; this bound
/// only catches a store that hangs without timing out itself.
const STORE_CALL_LIMIT: Duration = Duration::from_secs(6);
/// Most writes awaiting their echo from the watch (to time the watch lag); older ones are
/// forgotten.
const ECHOES_AWAITED: usize = 256;

/// What the StoreActor needs to know about this node.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The node record registered under the lease.
    pub node: Node,
    /// Lease TTL: a node that stops refreshing disappears from the cluster this long after.
    pub lease_ttl: Duration,
    /// Upstream DNS servers (reported in the status).
    pub upstream_dns: Vec<SocketAddr>,
}

/// The actor; see the module documentation.
pub struct StoreActor {
    cfg: StoreConfig,
    connect: Connector,
    connect_delay: Duration,
    store: Option<Arc<dyn Store>>,
    lease: Option<i64>,
    registering: bool,
    keepalive_inflight: bool,
    connected: bool,
    state: Arc<ClusterState>,
    listed: bool,
    subscribers: Vec<Recipient<ClusterChanged>>,
    owned: Owned,
    owned_gen: u64,
    /// An owned key could not be written or deleted while etcd was away: once etcd answers
    /// again, every owned key is written again under the lease held ([`rewrite`]).
    owned_dirty: bool,
    /// Keys no longer owned whose deletion has not reached etcd yet.
    stale: BTreeSet<String>,
    /// A rewrite of the owned keys is running.
    rewriting: bool,
    deregistered: bool,
    /// Where the state held and the link's health are published for scrapes.
    metrics: Arc<StoreMetrics>,
    /// Revisions of this agent's writes and when etcd acknowledged them, oldest first.
    echoes: VecDeque<(i64, Instant)>,
}

impl StoreActor {
    /// A StoreActor for `cfg`, reaching the store through `connect`.
    pub fn new(cfg: StoreConfig, connect: Connector) -> StoreActor {
        let mut owned = Owned::new();
        let node_name = cfg.node.name.clone();
        let node_key = Key::Node(cfg.node.name.clone()).to_string();
        // Serialising a plain struct of strings and numbers cannot fail.
        owned.insert(node_key, serde_json::to_vec(&cfg.node).unwrap_or_default());
        StoreActor {
            cfg,
            connect,
            connect_delay: Duration::from_millis(200),
            store: None,
            lease: None,
            registering: false,
            keepalive_inflight: false,
            connected: false,
            state: Arc::new(ClusterState::new()),
            listed: false,
            subscribers: Vec::new(),
            owned,
            owned_gen: 0,
            owned_dirty: false,
            stale: BTreeSet::new(),
            rewriting: false,
            deregistered: false,
            metrics: Arc::new(StoreMetrics::new(&node_name)),
            echoes: VecDeque::new(),
        }
    }

    /// Publishes the state held and the link's health into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<StoreMetrics>) -> StoreActor {
        self.metrics = metrics;
        self
    }

    /// Notes a write of this agent that etcd committed at `revision`, to time its echo.
    fn wrote(&mut self, revision: i64) {
        if self.echoes.len() >= ECHOES_AWAITED {
            self.echoes.pop_front();
        }
        self.echoes.push_back((revision, Instant::now()));
        self.echoed();
    }

    /// Times the writes the state held now includes (at once: the watch was faster than
    /// the write's acknowledgement).
    fn echoed(&mut self) {
        let held = self.state.revision();
        while let Some((revision, at)) = self.echoes.front().copied() {
            if revision > held {
                break;
            }
            self.echoes.pop_front();
            self.metrics.watch_lag(at.elapsed());
        }
    }

    fn io_limit(&self) -> Duration {
        self.cfg.lease_ttl.max(STORE_CALL_LIMIT)
    }

    fn start_connect(&mut self, ctx: &mut Context<Self>) {
        let connect = self.connect.clone();
        let me = ctx.address();
        actix_rt::spawn(async move { me.do_send(Connected(connect().await)) });
    }

    /// Periodic membership work: register when there is no lease, else refresh it.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if self.registering || self.keepalive_inflight || self.deregistered {
            return;
        }
        let Some(lease) = self.lease else {
            self.start_registration(store, ctx);
            return;
        };
        self.keepalive_inflight = true;
        let limit = self.io_limit();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let result = bounded(limit, store.keep_alive(lease)).await;
            me.do_send(KeptAlive { lease, result });
        });
    }

    fn start_registration(&mut self, store: Arc<dyn Store>, ctx: &mut Context<Self>) {
        self.registering = true;
        let owned = self.owned.clone();
        let gen = self.owned_gen;
        let ttl = i64::try_from(self.cfg.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let limit = self.io_limit();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let keys = owned.keys().cloned().collect();
            let result = lease::register(store, ttl, owned, limit).await;
            me.do_send(Registered { result, gen, keys });
        });
    }

    fn lease_lost(&mut self, ctx: &mut Context<Self>) {
        if self.lease.take().is_some() {
            warn!(node = %self.cfg.node.name, "lease lost: etcd dropped this node; registering again");
        }
        self.tick(ctx);
    }

    fn set_connected(&mut self, connected: bool, why: Option<&StoreError>) {
        if connected && !self.connected {
            info!(revision = self.state.revision(), "etcd reachable");
        } else if !connected && self.connected {
            let error = why.map(ToString::to_string).unwrap_or_default();
            warn!(%error, "etcd unreachable: keeping the last known state, retrying");
        }
        self.connected = connected;
        self.metrics.set_connected(connected);
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(node = %self.cfg.node.name, underlay = %self.cfg.node.underlay, ttl_secs = self.cfg.lease_ttl.as_secs(), "store actor started");
        self.start_connect(ctx);
        let every = (self.cfg.lease_ttl / 3).max(Duration::from_millis(100));
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
    }
}

/// Result of a connection attempt.
#[derive(Message)]
#[rtype(result = "()")]
struct Connected(Result<Arc<dyn Store>, StoreError>);

impl Handler<Connected> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Connected, ctx: &mut Context<Self>) {
        match msg.0 {
            Ok(store) => {
                info!("connected to the cluster store");
                ctx.add_stream(watch_changes(store.clone(), Prefix::All.to_string(), None));
                self.store = Some(store);
                self.set_connected(true, None);
                self.tick(ctx);
            }
            Err(e) => {
                self.set_connected(false, Some(&e));
                debug!(error = %e, delay_ms = self.connect_delay.as_millis() as u64, "connect failed; retrying");
                let delay = self.connect_delay;
                self.connect_delay = (delay * 2).min(MAX_CONNECT_DELAY);
                ctx.run_later(delay, |act, ctx| act.start_connect(ctx));
            }
        }
    }
}

/// Result of a registration (lease grant + owned keys written).
#[derive(Message)]
#[rtype(result = "()")]
struct Registered {
    result: Result<i64, StoreError>,
    /// `owned_gen` when the registration started.
    gen: u64,
    /// The owned keys it wrote.
    keys: Vec<String>,
}

impl Handler<Registered> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: Registered, ctx: &mut Context<Self>) {
        self.registering = false;
        let lease = match msg.result {
            Ok(lease) => lease,
            Err(e) => {
                self.set_connected(false, Some(&e));
                return;
            }
        };
        if self.deregistered {
            // Deregistered while this registration was in flight: undo it.
            if let Some(store) = self.store.clone() {
                let limit = self.io_limit();
                actix_rt::spawn(async move {
                    let _ = bounded(limit, store.revoke_lease(lease)).await;
                });
            }
            return;
        }
        info!(node = %self.cfg.node.name, lease = %format_args!("{lease:x}"), keys = msg.keys.len(), "node registered");
        self.lease = Some(lease);
        // Every owned key is now under the new lease; the stale ones went with the old lease.
        self.stale.clear();
        self.set_connected(true, None);
        if msg.gen == self.owned_gen {
            return;
        }
        // Owned keys changed while registering: write the current set, drop what went away.
        let gone = msg.keys.into_iter().filter(|k| !self.owned.contains_key(k));
        self.stale.extend(gone);
        self.rewrite(ctx);
    }
}

/// Result of one lease refresh.
#[derive(Message)]
#[rtype(result = "()")]
struct KeptAlive {
    lease: i64,
    result: Result<i64, StoreError>,
}

impl Handler<KeptAlive> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: KeptAlive, ctx: &mut Context<Self>) {
        self.keepalive_inflight = false;
        if self.lease != Some(msg.lease) {
            return;
        }
        match msg.result {
            Ok(_) if self.owned_dirty => {
                self.set_connected(true, None);
                info!("etcd is back: writing the keys changed meanwhile under the lease held");
                self.rewrite(ctx);
            }
            Ok(_) => self.set_connected(true, None),
            Err(StoreError::LeaseNotFound(_)) => {
                self.set_connected(true, None);
                self.lease_lost(ctx);
            }
            Err(e) => self.set_connected(false, Some(&e)),
        }
    }
}

/// How long after a whole listing the allocator's free memory is given back.
const TRIM_AFTER_LIST: Duration = Duration::from_secs(3);

/// Gives the allocator's free memory back to the system. Taking in a whole listing (10,000
/// endpoints, say) allocates several times what the state keeps; glibc's arenas would hold on
/// to the difference for the agent's lifetime.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl StreamHandler<ClusterChange> for StoreActor {
    fn handle(&mut self, change: ClusterChange, ctx: &mut Context<Self>) {
        let first = !self.listed;
        self.listed = true;
        // A change from the watch is an answer from etcd.
        self.set_connected(true, None);
        let changes = Arc::make_mut(&mut self.state).apply(&change);
        if matches!(change, ClusterChange::Snapshot { .. }) {
            self.metrics.relisted();
            // Once the owners have taken the listing in, its transient copies are free.
            ctx.run_later(TRIM_AFTER_LIST, |_, _| release_free_memory());
        }
        self.metrics.cluster.publish(self.state.clone());
        self.echoed();
        debug!(
            revision = self.state.revision(),
            changes = changes.len(),
            "cluster changed"
        );
        let me = &self.cfg.node.name;
        let lost_self = changes
            .iter()
            .any(|c| matches!(c, StateChange::Node(Change::Removed(n)) if &n.name == me));
        self.subscribers.retain(|s| s.connected());
        if first || !changes.is_empty() {
            let msg = ClusterChanged {
                changes,
                state: self.state.clone(),
            };
            let revision = msg.state.revision();
            msg.changes.iter().for_each(|c| log_change(c, revision));
            for s in &self.subscribers {
                s.do_send(msg.clone());
            }
        }
        if lost_self && self.lease.is_some() && !self.registering {
            self.lease_lost(ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("cluster watch ended");
    }
}

/// Logs one typed change: membership and networks at info, the rest at debug.
fn log_change(change: &StateChange, revision: i64) {
    use StateChange as C;
    match change {
        C::Network(Change::Added(n)) => {
            info!(network = %n.name, subnet = %n.subnet, vni = n.vni, revision, "network added")
        }
        C::Network(Change::Updated { new, .. }) => {
            info!(network = %new.name, revision, "network updated")
        }
        C::Network(Change::Removed(n)) => info!(network = %n.name, revision, "network removed"),
        C::Node(Change::Added(n)) => {
            info!(node = %n.name, underlay = %n.underlay, revision, "node up")
        }
        C::Node(Change::Updated { new, .. }) => {
            info!(node = %new.name, underlay = %new.underlay, revision, "node updated")
        }
        C::Node(Change::Removed(n)) => info!(node = %n.name, revision, "node down"),
        C::Problem(Change::Added(p) | Change::Updated { new: p, .. }) => {
            warn!(network = %p.network, node = %p.node, reason = %p.reason, revision, "node skips a network")
        }
        other => debug!(change = ?other, revision, "cluster change"),
    }
}

#[cfg(test)]
mod tests;
