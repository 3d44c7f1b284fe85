//! What the dataplane owner tells others: the firewall owner its part of the ruleset (an
//! attach's ports before it replies), the cluster the networks it skips and why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use shibafu_overlay::firewall::{FirewallSpec, Part};
use shibafu_overlay::model::{NetworkProblem, Object, SCHEMA_VERSION};
use tracing::{info, warn};

use super::Reconciler;
use crate::firewall_actor::Contribute;
use crate::metrics::DataplaneMetrics;
use crate::publish::PublishQueue;

/// How long an attach waits for the firewall owner to list its ports before it replies anyway
/// (their frames are dropped until they are listed).
const GUARD_WAIT: Duration = Duration::from_secs(2);

/// Waits (at most [`GUARD_WAIT`]) for the firewall owner to have applied an attach's ports.
pub(super) async fn guarded(request: RecipientRequest<Contribute>) {
    match request.timeout(GUARD_WAIT).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "the new ports' source guard is not applied; their frames are dropped until it is")
        }
        Err(e) => {
            warn!(error = %e, "the firewall owner has not listed the new ports yet; their frames are dropped until it does")
        }
    }
}

/// What the actor tells others after each pass.
pub(super) struct Reports {
    /// This node's name.
    pub(super) node: String,
    firewall: Recipient<Contribute>,
    publish: PublishQueue,
    /// Problems published, by network.
    problems: BTreeMap<String, String>,
    /// The firewall part last sent.
    sent: Option<FirewallSpec>,
    /// The reconciler's firewall inputs the last part was built from.
    part_of: Option<u64>,
    /// Pass durations, errors and op counts, for scrapes.
    pub(super) metrics: Arc<DataplaneMetrics>,
}

impl Reports {
    /// Reports of node `node` to `firewall` and through `publish`, nothing sent yet.
    pub(super) fn new(
        node: String,
        firewall: Recipient<Contribute>,
        publish: PublishQueue,
    ) -> Reports {
        Reports {
            node,
            firewall,
            publish,
            problems: BTreeMap::new(),
            sent: None,
            part_of: None,
            metrics: Arc::default(),
        }
    }

    /// As an attach starts on the kernel: hands the firewall owner the firewall part of the
    /// attach's plan, which lists the new ports in the source guard (it drops frames of
    /// container ports it does not list); the attach awaits the answer with [`guarded`] before
    /// it replies, so it costs the longer of the two, not their sum.
    pub(super) fn guard_ports(&mut self, rec: &Reconciler) -> Option<RecipientRequest<Contribute>> {
        let spec = self.changed_part(rec)?;
        Some(self.firewall.send(Contribute(Part::Networks(spec))))
    }

    /// The firewall part of `rec` when it differs from the one last sent, remembered as sent;
    /// built only when its inputs changed since the last time (an attach's pass after
    /// [`Reports::guard_ports`] builds nothing again).
    fn changed_part(&mut self, rec: &Reconciler) -> Option<FirewallSpec> {
        let inputs = rec.firewall_inputs();
        if self.part_of == Some(inputs) {
            return None;
        }
        let part = rec.firewall_part()?;
        self.part_of = Some(inputs);
        match part {
            Ok(spec) if self.sent.as_ref() != Some(&spec) => {
                self.sent = Some(spec.clone());
                Some(spec)
            }
            Ok(_) => None,
            Err(e) => {
                warn!(error = %e, "cannot build the firewall part");
                None
            }
        }
    }

    /// Tells the firewall owner and the cluster what the pass built (or failed to).
    pub(super) fn after_pass(&mut self, rec: &Reconciler) {
        let (applied, failed) = rec.op_counts();
        self.metrics.ops(applied, failed);
        if let Some(spec) = self.changed_part(rec) {
            self.firewall.do_send(Contribute(Part::Networks(spec)));
        }
        let now: BTreeMap<String, String> = rec
            .skipped()
            .iter()
            .map(|s| (s.name.clone(), s.reason.clone()))
            .collect();
        for (network, reason) in &now {
            if self.problems.get(network) != Some(reason) {
                self.publish.put(&NetworkProblem {
                    schema: SCHEMA_VERSION,
                    network: network.clone(),
                    node: self.node.clone(),
                    reason: reason.clone(),
                });
            }
        }
        for network in self.problems.keys().filter(|n| !now.contains_key(*n)) {
            info!(network = %network, "network built again");
            let fixed = NetworkProblem {
                schema: SCHEMA_VERSION,
                network: network.clone(),
                node: self.node.clone(),
                reason: String::new(),
            };
            self.publish.delete(fixed.key());
        }
        self.problems = now;
    }
}
