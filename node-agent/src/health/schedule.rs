//! One instance's schedule: a task on the agent's runtime that, every period, runs the check
//! and counts connections, and reports each round to the HealthActor. It holds no health
//! state; the actor judges and publishes. Rounds of different instances are spread over the
//! period, and the probes running at once across all instances are bounded.

use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient};
use shibafu_overlay::health::{Clock, Prober, Tally, Target, Verdict};
use shibafu_overlay::model::{HealthCheck, Probe};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use super::plan::{InstanceKey, Spec};
use crate::runtime::Get;

/// One round of an instance: the check's verdict and the connection count, when it has them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Checked {
    /// The instance.
    pub key: InstanceKey,
    /// The schedule that ran it (a result of a replaced schedule is dropped).
    pub generation: u64,
    /// The check's verdict, when the instance has a check.
    pub verdict: Option<Verdict>,
    /// The connection count or why it failed, when the instance is counted.
    pub connections: Option<Result<u32, String>>,
    /// When the round ended (unix ms).
    pub at_ms: u64,
}

/// Everything a schedule needs.
pub struct Schedule {
    /// The instance.
    pub key: InstanceKey,
    /// This schedule's generation.
    pub generation: u64,
    /// What it does.
    pub spec: Spec,
    /// Runs the probes.
    pub prober: Arc<dyn Prober>,
    /// Finds a container's PID 1 for command checks.
    pub pids: Recipient<Get>,
    /// Where rounds are reported.
    pub report: Recipient<Checked>,
    /// Probes running at once, across all instances.
    pub limit: Arc<Semaphore>,
    /// The time reported with each round.
    pub clock: Clock,
}

impl Schedule {
    /// Runs rounds until the task is aborted or the actor is gone.
    pub async fn run(self) {
        let period = self.spec.period();
        let mut ticks =
            tokio::time::interval_at(Instant::now() + offset(&self.key, period), period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut target = self.spec.target.clone();
        let mut last: Option<Tally> = None;
        loop {
            ticks.tick().await;
            let verdict = match &self.spec.check {
                Some(check) => Some(self.check(check, &mut target).await),
                None => None,
            };
            let connections = match self.spec.count_port {
                Some(port) => Some(
                    match self.prober.connections(&target.netns, port, last).await {
                        Ok(tally) => {
                            last = Some(tally);
                            Ok(tally.connections)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                ),
                None => None,
            };
            if !self.report.connected() {
                return;
            }
            self.report.do_send(Checked {
                key: self.key.clone(),
                generation: self.generation,
                verdict,
                connections,
                at_ms: (self.clock)(),
            });
        }
    }

    async fn check(&self, check: &HealthCheck, target: &mut Target) -> Verdict {
        if let Probe::Cmd { .. } = check.probe {
            if !self.spec.container {
                return Verdict::fail(format!(
                    "{} is a namespace attached with `shibafu network attach`, not a container: a command check needs one (use a tcp or http check)",
                    target.name
                ));
            }
            if target.pid.is_none() {
                match self.pid_of(&target.name).await {
                    Ok(pid) => target.pid = Some(pid),
                    Err(why) => return Verdict::fail(why),
                }
            }
        }
        let timeout = Duration::from_millis(check.timeout_ms);
        let Ok(_turn) = self.limit.acquire().await else {
            return Verdict::fail("health checks are shutting down");
        };
        self.prober.probe(target, &check.probe, timeout).await
    }

    /// PID 1 of the container `name`, or why there is none yet.
    async fn pid_of(&self, name: &str) -> Result<i32, String> {
        match self.pids.send(Get(name.to_string())).await {
            Ok(Ok(info)) => match (info.state.as_str(), info.pid) {
                ("running", Some(pid)) => Ok(pid),
                (state, _) => Err(format!("container {name} is not running ({state})")),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("cannot ask the runtime for container {name}: {e}")),
        }
    }
}

/// Granularity of round offsets: instances share a slot, so the runtime wakes once per slot
/// for a handful of checks rather than once per check.
const SLOT: Duration = Duration::from_millis(10);

/// Where in the period an instance's rounds fall: one of the period's [`SLOT`]s, spread by its
/// key, so instances attached together are not all checked at the same moment.
pub fn offset(key: &InstanceKey, period: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.0.bytes().chain([0]).chain(key.1.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let slots = u64::try_from(period.as_millis() / SLOT.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    SLOT * u32::try_from(hash % slots).unwrap_or(0)
}
