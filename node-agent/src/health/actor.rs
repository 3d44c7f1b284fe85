//! HealthActor: owns the health of this node's service instances. It plans which instances
//! are checked or counted from this node's workloads (`LocalChanged`) and the services
//! (`ClusterChanged`), runs one [`Schedule`] task per instance, judges each round with the
//! instance's [`Tracker`], and publishes a `Health` record under the node lease (through its
//! [`RecordQueue`]) when the state or the connection count changes. An instance that goes
//! away loses its schedule at once and its record is deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use shibafu_overlay::health::{clip_text, worth_publishing, Clock, Prober, Tracker};
use shibafu_overlay::model::{Health, HealthState, Object, SCHEMA_VERSION};
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::store::keys::Key;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::plan::{self, InstanceKey, Spec};
use super::schedule::{Checked, Schedule};
use super::writer::RecordQueue;
use crate::messages::{ClusterChanged, LocalChanged};
use crate::metrics::HealthMetrics;
use crate::registry::LocalWorkloads;
use crate::runtime::Get;

/// Probes running at once across all instances (a TCP check takes well under a millisecond;
/// this bounds the sockets and processes a wave of slow instances can hold).
const PROBES_AT_ONCE: usize = 256;

/// What the HealthActor works with.
pub struct HealthLinks {
    /// This node's name (the records' `node`).
    pub node: String,
    /// Runs the probes.
    pub prober: Arc<dyn Prober>,
    /// Writes the records under the node lease.
    pub publish: RecordQueue,
    /// The RuntimeActor: a container's PID 1 for command checks.
    pub pids: Recipient<Get>,
    /// Unix milliseconds, for records and start periods.
    pub clock: Clock,
}

/// One instance being watched.
struct Instance {
    spec: Spec,
    generation: u64,
    task: JoinHandle<()>,
    tracker: Tracker,
    since_watched_ms: u64,
    checked_ms: u64,
    output: String,
    connections: Option<u32>,
    count_failing: bool,
    published: Option<Health>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The actor; see the module documentation.
pub struct HealthActor {
    links: HealthLinks,
    state: Option<Arc<ClusterState>>,
    local: Option<Arc<LocalWorkloads>>,
    instances: BTreeMap<InstanceKey, Instance>,
    generations: u64,
    limit: Arc<Semaphore>,
    /// Check results and transitions, for scrapes.
    metrics: Arc<HealthMetrics>,
}

impl HealthActor {
    /// The actor over `links`; it watches nothing until it has both the cluster state and this
    /// node's workloads.
    pub fn new(links: HealthLinks) -> HealthActor {
        HealthActor {
            links,
            state: None,
            local: None,
            instances: BTreeMap::new(),
            generations: 0,
            limit: Arc::new(Semaphore::new(PROBES_AT_ONCE)),
            metrics: Arc::default(),
        }
    }

    /// Counts check results and transitions in `metrics` (scraped by `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<HealthMetrics>) -> HealthActor {
        self.metrics = metrics;
        self
    }

    /// Spawns a schedule for `key`; its generation and task.
    fn start_schedule(
        &mut self,
        key: &InstanceKey,
        spec: &Spec,
        ctx: &Context<Self>,
    ) -> (u64, JoinHandle<()>) {
        self.generations += 1;
        let schedule = Schedule {
            key: key.clone(),
            generation: self.generations,
            spec: spec.clone(),
            prober: self.links.prober.clone(),
            pids: self.links.pids.clone(),
            report: ctx.address().recipient(),
            limit: self.limit.clone(),
            clock: self.links.clock.clone(),
        };
        (self.generations, actix_rt::spawn(schedule.run()))
    }

    /// Makes the watched instances those the plan wants: new ones scheduled, changed ones
    /// rescheduled (keeping their state), gone ones stopped and their records deleted.
    fn reconcile(&mut self, ctx: &Context<Self>) {
        let (Some(state), Some(local)) = (self.state.clone(), self.local.clone()) else {
            return;
        };
        let want = plan::desired(&state, &local);
        let gone: Vec<InstanceKey> = self
            .instances
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        self.converge(&state, gone, want, ctx);
    }

    /// Follows this node's workloads from `old` to the ones held now through the workloads that
    /// changed alone (the watched instances are the plan's for `old`, as every handler leaves
    /// them), rather than planning every workload of the node again.
    fn follow(&mut self, old: &LocalWorkloads, ctx: &Context<Self>) {
        let (Some(state), Some(local)) = (self.state.clone(), self.local.clone()) else {
            return;
        };
        let (had, has) = plan::changed(&state, old, &local);
        let gone = had.into_keys().filter(|k| !has.contains_key(k)).collect();
        self.converge(&state, gone, has, ctx);
    }

    /// Stops the instances `gone` and makes those of `want` watched with their spec.
    fn converge(
        &mut self,
        state: &ClusterState,
        gone: Vec<InstanceKey>,
        want: BTreeMap<InstanceKey, Spec>,
        ctx: &Context<Self>,
    ) {
        for key in gone {
            self.stop(&key, state);
        }
        let now = (self.links.clock)();
        for (key, spec) in want {
            match self.instances.get(&key) {
                Some(inst) if inst.spec == spec => {}
                Some(_) => self.reschedule(&key, spec, now, ctx),
                None => self.watch(key, spec, state, now, ctx),
            }
        }
    }

    /// Stops watching `key` (its task ends as it is dropped) and deletes its record, if this
    /// node has one.
    fn stop(&mut self, key: &InstanceKey, state: &ClusterState) {
        let Some(old) = self.instances.remove(key) else {
            return;
        };
        let stored = state
            .health()
            .get(key)
            .is_some_and(|h| h.node == self.links.node);
        if old.published.is_some() || stored {
            self.links.publish.delete(Key::Health {
                network: key.0.clone(),
                id: key.1.clone(),
            });
        }
        debug!(network = %key.0, instance = %key.1, "health watch stopped");
    }

    /// Replaces the schedule of a watched instance whose spec changed. Its state stays; a new
    /// probe starts the streaks over, and a first check starts it over at `starting`.
    fn reschedule(&mut self, key: &InstanceKey, spec: Spec, now: u64, ctx: &Context<Self>) {
        let (generation, task) = self.start_schedule(key, &spec, ctx);
        let Some(inst) = self.instances.get_mut(key) else {
            task.abort();
            return;
        };
        match (&inst.spec.check, &spec.check) {
            (Some(a), Some(b)) if a.probe != b.probe => inst.tracker.restart_streaks(),
            (None, Some(_)) => inst.tracker = Tracker::new(now),
            _ => {}
        }
        inst.task.abort();
        inst.task = task;
        inst.generation = generation;
        inst.spec = spec;
        debug!(network = %key.0, instance = %key.1, "health watch changed");
    }

    /// Starts watching a new instance. A record this node wrote before a restart keeps its
    /// state: a healthy instance stays answered instead of starting over.
    fn watch(
        &mut self,
        key: InstanceKey,
        spec: Spec,
        state: &ClusterState,
        now: u64,
        ctx: &Context<Self>,
    ) {
        let (generation, task) = self.start_schedule(&key, &spec, ctx);
        let tracker = match state.health().get(&key) {
            Some(h) if h.node == self.links.node => Tracker::resume(h.state, h.since_ms, now),
            _ => Tracker::new(now),
        };
        debug!(network = %key.0, instance = %key.1, check = spec.check.is_some(), count = ?spec.count_port, "health watch started");
        self.instances.insert(
            key,
            Instance {
                spec,
                generation,
                task,
                tracker,
                since_watched_ms: now,
                checked_ms: now,
                output: String::new(),
                connections: None,
                count_failing: false,
                published: None,
            },
        );
    }
}

impl Instance {
    /// Its state and since when: the tracker's with a check; healthy since it was first seen
    /// without one (it only has a record for its connection count).
    fn standing(&self) -> (HealthState, u64) {
        match self.spec.check {
            Some(_) => (self.tracker.state(), self.tracker.since_ms()),
            None => (HealthState::Healthy, self.since_watched_ms),
        }
    }

    /// The record this instance stands at.
    fn record(&self, key: &InstanceKey, node: &str) -> Health {
        let (state, since_ms) = self.standing();
        Health {
            schema: SCHEMA_VERSION,
            network: key.0.clone(),
            endpoint: key.1.clone(),
            node: node.to_string(),
            state,
            since_ms,
            checked_ms: self.checked_ms,
            output: self.output.clone(),
            connections: self.connections,
        }
    }

    /// Takes one round; true when the state changed.
    fn take(&mut self, key: &InstanceKey, round: Checked) -> bool {
        self.checked_ms = round.at_ms;
        let mut moved = false;
        if let (Some(check), Some(verdict)) = (&self.spec.check, round.verdict) {
            moved = self.tracker.observe(check, verdict.passed, round.at_ms);
            self.output = clip_text(verdict.output);
        }
        match round.connections {
            Some(Ok(n)) => {
                if self.count_failing {
                    info!(network = %key.0, instance = %key.1, connections = n, "connections counted again");
                }
                self.count_failing = false;
                self.connections = Some(n);
            }
            Some(Err(e)) => {
                if !self.count_failing {
                    warn!(network = %key.0, instance = %key.1, error = %e, "cannot count connections; keeping the last count");
                }
                self.count_failing = true;
            }
            None => {}
        }
        moved
    }
}

impl Actor for HealthActor {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for HealthActor {
    type Result = ();

    fn handle(&mut self, msg: ClusterChanged, ctx: &mut Context<Self>) {
        // Only services change what is checked; the echo of this node's own records and
        // everything else leave the schedules alone.
        let first = self.state.is_none();
        let services = msg
            .changes
            .iter()
            .any(|c| matches!(c, StateChange::Service(_)));
        self.state = Some(msg.state);
        if first || services {
            self.reconcile(ctx);
        }
    }
}

impl Handler<LocalChanged> for HealthActor {
    type Result = ();

    fn handle(&mut self, msg: LocalChanged, ctx: &mut Context<Self>) {
        match self.local.replace(msg.0) {
            Some(old) if self.state.is_some() => self.follow(&old, ctx),
            _ => self.reconcile(ctx),
        }
    }
}

impl Handler<Checked> for HealthActor {
    type Result = ();

    fn handle(&mut self, round: Checked, _ctx: &mut Context<Self>) {
        let key = round.key.clone();
        let Some(inst) = self.instances.get_mut(&key) else {
            return;
        };
        if inst.generation != round.generation {
            return;
        }
        let passed = round.verdict.as_ref().map(|v| v.passed);
        let moved = inst.take(&key, round);
        if let (Some(passed), Some(_)) = (passed, &inst.spec.check) {
            self.metrics.checked(&key.0, &inst.spec.service, passed);
        }
        if moved {
            let to = match inst.tracker.state() {
                HealthState::Starting => "starting",
                HealthState::Healthy => "healthy",
                HealthState::Unhealthy => "unhealthy",
            };
            self.metrics.moved(&key.0, &inst.spec.service, to);
            info!(network = %key.0, instance = %key.1, state = ?inst.tracker.state(), output = %inst.output, "instance health changed");
        }
        let (state, _) = inst.standing();
        if worth_publishing(inst.published.as_ref(), state, inst.connections) {
            let record = inst.record(&key, &self.links.node);
            debug!(key = %record.key(), state = ?record.state, connections = ?record.connections, "health record written");
            self.links.publish.put(&record);
            inst.published = Some(record);
        }
    }
}
