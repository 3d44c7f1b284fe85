//! PolicyActor: the owner of this node's policy table (`table inet shibafu-policy`). On every
//! cluster change that can move it (networks, endpoints, policies) it compiles the table for
//! this node (`shibafu_overlay::policy::compile`, pure) and loads only the difference from what
//! the kernel holds, one nft transaction at a time, the latest compilation winning. Every
//! [`COUNTERS`] it reads the rules' counters and publishes each policy's figures that changed
//! (`PolicyCounters`, under the node lease) for `shibafu network policy inspect`; a table found
//! missing is loaded again whole.
//!
//! The policy table is a table of its own rather than a part of the FirewallActor's: its
//! changes are element by element while the main table is replaced whole, and the two meet
//! only through packet marks the main table honours.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use shibafu_overlay::model::{Action, PolicyCounters, SCHEMA_VERSION};
use shibafu_overlay::policy::{
    compile, effective_policies, Compiled, PolicyCounterNames, PolicyEnforcer,
};
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::telemetry::follow;
use tracing::{debug, info, info_span, warn, Instrument, Span};

use crate::health::RecordQueue;
use crate::messages::ClusterChanged;
use crate::metrics::{DataplaneMetrics, PolicyMetrics};

/// How often the counters are read (and the table checked).
pub const COUNTERS: Duration = Duration::from_secs(2);

/// The actor; see the module documentation.
pub struct PolicyActor {
    node: String,
    /// `None` while a load runs (it is lent to the load's future).
    enforcer: Option<PolicyEnforcer>,
    /// The latest compilation, `None` before the cluster was read.
    desired: Option<Compiled>,
    /// A compilation newer than the one being loaded is waiting.
    pending: bool,
    publish: RecordQueue,
    /// Figures last published, by policy.
    published: BTreeMap<String, PolicyCounters>,
    /// How often counters are read.
    every: Duration,
    /// Each stored policy's rule actions, in order (the verdict label of its counters).
    verdicts: BTreeMap<String, Vec<Action>>,
    /// The counters last read, for scrapes.
    metrics: Arc<PolicyMetrics>,
    /// Table load durations and errors, for scrapes.
    loads: Arc<DataplaneMetrics>,
}

impl PolicyActor {
    /// The actor for node `node`, loading through `enforcer`, publishing through `publish`.
    pub fn new(node: String, enforcer: PolicyEnforcer, publish: RecordQueue) -> PolicyActor {
        PolicyActor {
            node,
            enforcer: Some(enforcer),
            desired: None,
            pending: false,
            publish,
            published: BTreeMap::new(),
            every: COUNTERS,
            verdicts: BTreeMap::new(),
            metrics: Arc::default(),
            loads: Arc::default(),
        }
    }

    /// Publishes the counters read into `metrics` and table loads into `loads` (scraped by
    /// `/metrics`).
    pub fn with_metrics(
        mut self,
        metrics: Arc<PolicyMetrics>,
        loads: Arc<DataplaneMetrics>,
    ) -> PolicyActor {
        self.metrics = metrics;
        self.loads = loads;
        self
    }

    /// Reads the counters every `every` instead of [`COUNTERS`].
    #[cfg(test)]
    pub fn reading_every(mut self, every: Duration) -> PolicyActor {
        self.every = every;
        self
    }

    fn recompile(&mut self, state: &ClusterState, ctx: &mut Context<Self>) {
        let start = Instant::now();
        let networks: Vec<_> = state.networks().values().collect();
        let policies: Vec<_> = state.policies().values().collect();
        // Without a policy in force the table is empty whatever the endpoints: they are not
        // read (a large cluster's 10,000, on each of its changes).
        let in_force = effective_policies(networks.iter().copied(), policies.iter().copied());
        let compiled = if in_force.is_empty() {
            Compiled::default()
        } else {
            let endpoints: Vec<_> = state.endpoints().values().collect();
            compile(&networks, &endpoints, &policies, &self.node)
        };
        self.verdicts = policies
            .iter()
            .map(|p| (p.name.clone(), p.rules.iter().map(|r| r.action).collect()))
            .collect();
        debug!(
            policies = policies.len(),
            endpoints = state.endpoints().len(),
            micros = start.elapsed().as_micros() as u64,
            "policy table compiled"
        );
        self.desired = Some(compiled);
        self.converge(ctx);
    }

    /// Loads the latest compilation unless it is what the kernel holds; one load at a time.
    fn converge(&mut self, ctx: &mut Context<Self>) {
        let Some(desired) = &self.desired else { return };
        let Some(mut enforcer) = self.enforcer.take() else {
            self.pending = true;
            return;
        };
        self.pending = false;
        let table = desired.table.clone();
        let load = async move {
            let start = Instant::now();
            let res = enforcer.enforce(&table).await;
            (enforcer, res, start.elapsed(), table)
        }
        .instrument(Span::current());
        ctx.spawn(
            load.into_actor(self)
                .map(|(enforcer, res, took, table), act, ctx| {
                    act.enforcer = Some(enforcer);
                    if !matches!(res, Ok(None)) {
                        act.loads.firewall_loaded("policy", took, res.is_ok());
                    }
                    match res {
                        Ok(Some(script)) => info!(
                            chains = table.chains.len(),
                            sets = table.sets.len(),
                            commands = script.lines().count(),
                            millis = took.as_secs_f64() * 1e3,
                            "policy table loaded"
                        ),
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "loading the policy table failed; retried on the next change or check"),
                    }
                    if act.pending {
                        act.converge(ctx);
                    }
                }),
        );
    }

    /// Reads the counters, publishes what changed, and reloads a table that went missing.
    fn check(&mut self, ctx: &mut Context<Self>) {
        let Some(enforcer) = &self.enforcer else {
            return;
        };
        let Some(desired) = &self.desired else {
            return;
        };
        // Only the counter names and whether a table is wanted: not a copy of the table.
        let (names, wanted) = (desired.counters.clone(), !desired.table.chains.is_empty());
        let backend = enforcer.backend().clone();
        let read = async move { backend.counters().await };
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(counts)) => {
                act.publish_counts(&names, &counts);
                act.sweep(ctx);
            }
            Ok(None) if wanted => {
                warn!("the policy table is missing; loading it again");
                if let Some(e) = act.enforcer.as_mut() {
                    e.forget();
                }
                act.converge(ctx);
            }
            Ok(None) => act.publish_counts(&names, &BTreeMap::new()),
            Err(e) => warn!(error = %e, "cannot read the policy counters"),
        }));
    }

    /// Deletes the counters that changed rules left behind (between loads, so no change waits
    /// for it).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if !self
            .enforcer
            .as_ref()
            .is_some_and(PolicyEnforcer::has_stale)
        {
            return;
        }
        let Some(mut enforcer) = self.enforcer.take() else {
            return;
        };
        let run = async move {
            let res = enforcer.sweep().await;
            (enforcer, res)
        };
        ctx.spawn(run.into_actor(self).map(|(enforcer, res), act, ctx| {
            act.enforcer = Some(enforcer);
            match res {
                Ok(n) => debug!(counters = n, "unused policy counters deleted"),
                Err(e) => warn!(error = %e, "deleting unused policy counters failed; retried on the next check"),
            }
            if act.pending {
                act.converge(ctx);
            }
        }));
    }

    /// Publishes each policy's figures that differ from the last published (a policy that
    /// never counted anything is not written), and deletes those of policies that went.
    fn publish_counts(&mut self, counters: &[PolicyCounterNames], counts: &BTreeMap<String, u64>) {
        let get = |name: &str| counts.get(name).copied().unwrap_or(0);
        self.metrics.read(series(counters, &self.verdicts, &get));
        let mut seen = Vec::new();
        for names in counters {
            let figures = PolicyCounters {
                schema: SCHEMA_VERSION,
                policy: names.policy.clone(),
                node: self.node.clone(),
                rules: names.rules.iter().map(|n| get(n)).collect(),
                isolation_dropped: get(&names.isolation),
            };
            seen.push(names.policy.clone());
            let before = self.published.get(&names.policy);
            let zero = figures.rules.iter().all(|n| *n == 0) && figures.isolation_dropped == 0;
            if before == Some(&figures) || (before.is_none() && zero) {
                continue;
            }
            self.publish.put(&figures);
            self.published.insert(names.policy.clone(), figures);
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|p| !seen.contains(p))
            .cloned()
            .collect();
        for policy in gone {
            self.published.remove(&policy);
            self.publish.delete(Key::PolicyCounters {
                policy,
                node: self.node.clone(),
            });
        }
    }
}

/// The counters as metric series: (policy, rule number from 1 or `isolation`, verdict) and
/// packets; a rule whose action is unknown (its policy just went) is left out.
fn series(
    counters: &[PolicyCounterNames],
    verdicts: &BTreeMap<String, Vec<Action>>,
    get: &dyn Fn(&str) -> u64,
) -> Vec<([String; 3], u64)> {
    let mut out = Vec::new();
    for names in counters {
        let actions = verdicts.get(&names.policy);
        for (i, counter) in names.rules.iter().enumerate() {
            let Some(action) = actions.and_then(|a| a.get(i)) else {
                continue;
            };
            let verdict = match action {
                Action::Allow => "allow",
                Action::Deny => "deny",
            };
            let labels = [names.policy.clone(), (i + 1).to_string(), verdict.into()];
            out.push((labels, get(counter)));
        }
        let labels = [names.policy.clone(), "isolation".into(), "deny".into()];
        out.push((labels, get(&names.isolation)));
    }
    out
}

/// Can `change` move this node's policy table?
fn moves_policies(change: &StateChange) -> bool {
    matches!(
        change,
        StateChange::Network(_) | StateChange::Endpoint(_) | StateChange::Policy(_)
    )
}

impl Actor for PolicyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| act.check(ctx));
    }
}

impl Handler<ClusterChanged> for PolicyActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, ctx: &mut Context<Self>) {
        if self.desired.is_none() || msg.changes.iter().any(moves_policies) {
            let traces = msg.traces();
            let span = if traces.is_empty() {
                Span::none()
            } else {
                let span = info_span!(
                    "policy.update",
                    node = %self.node,
                    revision = msg.state.revision(),
                    changes = traces.len(),
                );
                follow(&span, &traces);
                span
            };
            span.in_scope(|| self.recompile(&msg.state, ctx));
        }
    }
}

#[cfg(test)]
#[path = "policy_actor_tests.rs"]
mod tests;
