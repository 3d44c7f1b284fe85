//! DataplaneActor: owns the [`Reconciler`]. Reconciles the host side on each cluster change
//! (changes arriving meanwhile are folded into one follow-up), applies local workload changes
//! on request, and resyncs everything every 30 s. After each pass it hands the firewall owner
//! the rules for the networks it builds, and publishes (under the node lease) why it skips any
//! network, so `shibafu network inspect` can show it; a problem fixed is deleted again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::telemetry::{follow, Trace};
use tokio::sync::Mutex;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use shibafu_overlay::netlink::watch::Damage;

use super::repairs::RepairQueue;
use super::reports::{guarded, Reports};
use super::{DataplaneError, Reconciler};
use crate::firewall_actor::Contribute;
use crate::messages::ClusterChanged;
use crate::metrics::DataplaneMetrics;
use crate::pace::Pace;
use crate::publish::PublishQueue;
use crate::registry::LocalWorkloads;
use crate::tunnel::TunnelChanged;

/// How often the whole dataplane (every container namespace) is resynced.
const RESYNC: Duration = Duration::from_secs(30);

/// Applies this node's workloads as they should now be to one namespace.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), DataplaneError>")]
pub struct ApplyLocal {
    /// Every local workload (committed, with staged ones in their place).
    pub local: Arc<LocalWorkloads>,
    /// The namespace that changed.
    pub netns: PathBuf,
    /// An attach (may take the workload-only fast path).
    pub attach: bool,
    /// The attach's or detach's trace: the kernel work continues it.
    pub trace: Trace,
}

/// What the kernel lacks for the local workloads in one namespace, against the state of the
/// last pass (nothing is changed, no queued change is taken).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, DataplaneError>")]
pub struct CheckLocal(pub PathBuf);

/// The kernel reported things the dataplane built gone (see [`super::repair`]): repair now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Damaged(pub Vec<Damage>);

struct Owner {
    rec: Reconciler,
    reports: Reports,
}

/// The actor; see the module documentation.
pub struct DataplaneActor {
    owner: Arc<Mutex<Owner>>,
    /// The last change pass, to pace the next.
    last_pass: Pace,
    /// Latest state not yet handed to the reconciler; `Some` also means a reconcile is queued.
    inbox: Arc<StdMutex<Option<Pending>>>,
    seen_state: bool,
    /// Damage waiting for the repair task.
    repairs: Arc<StdMutex<RepairQueue>>,
    /// This node's name.
    node: String,
}

/// A state waiting for the reconciler, with the traces of every change folded into it.
struct Pending {
    state: Arc<ClusterState>,
    traces: Vec<Trace>,
}

fn take(inbox: &StdMutex<Option<Pending>>) -> Option<Pending> {
    inbox.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Why a pass outside the change path runs.
#[derive(Clone, Copy)]
enum Pass {
    /// The periodic full resync.
    Resync,
    /// The WireGuard device came up or went.
    TunnelChanged,
}

/// Are `changes` only this node's own endpoints coming back from etcd? The reconciler takes this
/// node's endpoints from its book, never from the cluster, so they cannot change its plan.
pub(super) fn only_own_endpoints(changes: &[StateChange], node: &str) -> bool {
    !changes.is_empty() && changes.iter().all(|c| c.is_endpoint_of(node))
}

/// The metric kind of a change pass: `change` when it compared the desired state with the
/// kernel (read, or as kept in memory since the last read), `unchanged` when it was the one
/// already applied (or not even planned: the change concerns no network built here).
fn change_kind(done: Result<bool, DataplaneError>) -> (&'static str, Result<(), DataplaneError>) {
    match done {
        Ok(false) => ("unchanged", Ok(())),
        other => ("change", other.map(drop)),
    }
}

/// One pass over the latest state waiting in `inbox` (a full resync, or a change pass after the
/// tunnel changed), timed, logged when it fails, and reported.
async fn pass(owner: &Mutex<Owner>, inbox: &StdMutex<Option<Pending>>, why: Pass) {
    let mut o = owner.lock().await;
    if let Some(p) = take(inbox) {
        o.rec.set_state(p.state);
    }
    let start = Instant::now();
    let (kind, done) = match why {
        Pass::Resync => ("resync", o.rec.resync().await),
        Pass::TunnelChanged => change_kind(o.rec.reconcile_change().await),
    };
    o.reports
        .metrics
        .reconciled(kind, start.elapsed(), done.is_ok());
    if let Err(e) = done {
        match why {
            Pass::Resync => warn!(error = %e, "periodic resync failed"),
            Pass::TunnelChanged => {
                warn!(error = %e, "reconcile after the tunnel changed failed; retried on the next change or resync")
            }
        }
    }
    let Owner { rec, reports } = &mut *o;
    reports.after_pass(rec);
}

/// The span of a reconcile caused by traced changes (none for the others): a child of the one
/// write behind it, or linked to each of several.
fn reconcile_span(node: &str, pending: &Pending) -> Span {
    if pending.traces.is_empty() {
        return Span::none();
    }
    let span = info_span!(
        "dataplane.reconcile",
        node = %node,
        revision = pending.state.revision(),
        changes = pending.traces.len(),
    );
    follow(&span, &pending.traces);
    span
}

impl DataplaneActor {
    /// The actor over a reconciler, telling `firewall` its part and publishing problems of
    /// node `node` through `publish`.
    pub fn new(
        rec: Reconciler,
        node: String,
        firewall: Recipient<Contribute>,
        publish: PublishQueue,
    ) -> DataplaneActor {
        DataplaneActor {
            owner: Arc::new(Mutex::new(Owner {
                rec,
                reports: Reports::new(node.clone(), firewall, publish),
            })),
            last_pass: Pace::default(),
            inbox: Arc::default(),
            seen_state: false,
            repairs: Arc::default(),
            node,
        }
    }

    /// Records pass durations, errors and op counts in `metrics` (scraped by `/metrics`).
    /// Call before the actor starts.
    pub fn with_metrics(mut self, metrics: Arc<DataplaneMetrics>) -> DataplaneActor {
        if let Some(owner) = Arc::get_mut(&mut self.owner) {
            owner.get_mut().reports.metrics = metrics;
        }
        self
    }
}

impl Actor for DataplaneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RESYNC, |act, _ctx| {
            if !act.seen_state {
                return;
            }
            let (owner, inbox) = (act.owner.clone(), act.inbox.clone());
            actix_rt::spawn(async move {
                pass(&owner, &inbox, Pass::Resync).await;
            });
        });
    }
}

impl Handler<ClusterChanged> for DataplaneActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, _ctx: &mut Context<Self>) {
        let first = !self.seen_state;
        self.seen_state = true;
        if !first && only_own_endpoints(&msg.changes, &self.node) {
            return;
        }
        let traces = msg.traces();
        let queued = {
            let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
            let queued = inbox.is_some();
            let mut pending = inbox.take().unwrap_or(Pending {
                state: msg.state.clone(),
                traces: Vec::new(),
            });
            pending.state = msg.state;
            pending.traces.extend(traces);
            *inbox = Some(pending);
            queued
        };
        if queued && !first {
            return;
        }
        let (owner, inbox) = (self.owner.clone(), self.inbox.clone());
        let last_pass = self.last_pass.clone();
        actix_rt::spawn(async move {
            let wait = last_pass.wait();
            if !first && !wait.is_zero() {
                actix_rt::time::sleep(wait).await;
            }
            let mut o = owner.lock().await;
            let pending = take(&inbox);
            if pending.is_none() && !first {
                return;
            }
            let span = match pending {
                Some(p) => {
                    let span = reconcile_span(&o.reports.node, &p);
                    o.rec.set_state(p.state);
                    span
                }
                None => Span::none(),
            };
            let start = Instant::now();
            let (kind, done) = if first {
                ("resync", o.rec.resync().instrument(span).await)
            } else {
                change_kind(o.rec.reconcile_change().instrument(span).await)
            };
            let took = start.elapsed();
            o.reports.metrics.reconciled(kind, took, done.is_ok());
            last_pass.record(took);
            match done {
                Ok(()) if first => info!("dataplane adopted"),
                Ok(()) => {}
                Err(e) => {
                    warn!(error = %e, "reconcile failed; retried on the next change or resync")
                }
            }
            let Owner { rec, reports } = &mut *o;
            reports.after_pass(rec);
        });
    }
}

impl Handler<ApplyLocal> for DataplaneActor {
    type Result = ResponseFuture<Result<(), DataplaneError>>;

    fn handle(&mut self, msg: ApplyLocal, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.seen_state {
            return Box::pin(async { Err(DataplaneError::NotReady) });
        }
        let (owner, inbox) = (self.owner.clone(), self.inbox.clone());
        let span = if msg.trace.is_none() {
            Span::none()
        } else {
            info_span!("dataplane.apply", netns = %msg.netns.display(), attach = msg.attach)
        };
        msg.trace.adopt(&span);
        let apply = async move {
            let mut o = owner.lock().await;
            if let Some(p) = take(&inbox) {
                o.rec.set_state(p.state);
            }
            o.rec.set_local(msg.local);
            let start = Instant::now();
            let done = match o.rec.plan_local(&msg.netns, msg.attach) {
                Ok(planned) => {
                    let guard = if msg.attach {
                        let Owner { rec, reports } = &mut *o;
                        reports.guard_ports(rec)
                    } else {
                        None
                    };
                    let done = o.rec.apply_planned(planned).await;
                    if let Some(guard) = guard {
                        guarded(guard).await;
                    }
                    done
                }
                Err(e) => Err(e),
            };
            o.reports
                .metrics
                .reconciled("local", start.elapsed(), done.is_ok());
            let Owner { rec, reports } = &mut *o;
            reports.after_pass(rec);
            done
        };
        Box::pin(apply.instrument(span))
    }
}

impl Handler<CheckLocal> for DataplaneActor {
    type Result = ResponseFuture<Result<Vec<String>, DataplaneError>>;

    fn handle(&mut self, msg: CheckLocal, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.seen_state {
            return Box::pin(async { Err(DataplaneError::NotReady) });
        }
        let owner = self.owner.clone();
        Box::pin(async move { owner.lock().await.rec.check_local(&msg.0).await })
    }
}

impl Handler<Damaged> for DataplaneActor {
    type Result = ();

    fn handle(&mut self, msg: Damaged, _ctx: &mut Context<Self>) {
        if !self.seen_state || !queue(&self.repairs).push(msg.0) {
            return;
        }
        let (owner, repairs) = (self.owner.clone(), self.repairs.clone());
        actix_rt::spawn(async move {
            loop {
                // The guard ends with this statement: never held across the repair.
                let next = queue(&repairs).take();
                let Some(damage) = next else { break };
                repair(&owner, &damage).await;
            }
        });
    }
}

fn queue(q: &StdMutex<RepairQueue>) -> std::sync::MutexGuard<'_, RepairQueue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// One repair pass over `damage`, logged and reported like any other pass.
async fn repair(owner: &Mutex<Owner>, damage: &[Damage]) {
    let mut o = owner.lock().await;
    let start = Instant::now();
    let done = o.rec.repair(damage).await;
    o.reports
        .metrics
        .reconciled("repair", start.elapsed(), done.is_ok());
    let what: Vec<String> = damage.iter().map(ToString::to_string).collect();
    let took_ms = start.elapsed().as_millis() as u64;
    match done {
        Ok(0) => debug!(damage = ?what, "nothing to repair (the agent's own change)"),
        Ok(ops) => info!(damage = ?what, ops, took_ms, "dataplane repaired after outside changes"),
        Err(e) => warn!(damage = ?what, error = %e, "repair failed; retried on the next resync"),
    }
    let Owner { rec, reports } = &mut *o;
    reports.after_pass(rec);
}

impl Handler<TunnelChanged> for DataplaneActor {
    type Result = ();

    /// The WireGuard device came up or went: remote endpoints of encrypted networks point at
    /// the peers' tunnel addresses, or wait.
    fn handle(&mut self, msg: TunnelChanged, _ctx: &mut Context<Self>) {
        let (owner, inbox) = (self.owner.clone(), self.inbox.clone());
        let seen = self.seen_state;
        actix_rt::spawn(async move {
            owner.lock().await.rec.set_tunnel(msg.0);
            if seen {
                pass(&owner, &inbox, Pass::TunnelChanged).await;
            }
        });
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
