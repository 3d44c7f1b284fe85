//! How a pass reaches the kernel: observe (or, for a cluster change, take the host side as the
//! mirror holds it), plan, apply, and keep the mirror true to what was applied. A change for
//! remote endpoints thus costs its own FDB and neighbour entries, not a dump of every entry of
//! the host's networks.

use std::sync::Arc;

use shibafu_overlay::netlink::{ApplyReport, NetlinkError, Reconciled, Scope};
use shibafu_overlay::plan::{plan, DesiredHost, Op};
use tracing::{debug, info};

use super::{DataplaneError, Reconciler};

/// Does `scope` ask for the host side and no container namespace (a cluster change's pass)?
fn host_only(scope: &Scope) -> bool {
    matches!(scope, Scope::Only(netns) if netns.is_empty())
}

impl Reconciler {
    /// Reconciles the kernel to `desired` within `scope`; remembers it as settled when every op
    /// applied.
    pub(super) async fn reconcile_to(
        &mut self,
        desired: Arc<DesiredHost>,
        scope: Scope,
    ) -> Result<(), DataplaneError> {
        self.settled = None;
        let (ops, report) = self.plan_and_apply(&desired, &scope).await?;
        self.ops.0 += report.applied as u64;
        self.ops.1 += report.errors.len() as u64;
        if !ops.is_empty() {
            info!(
                ops = ops.len(),
                applied = report.applied,
                failed = report.errors.len(),
                "dataplane reconciled"
            );
        }
        if report.is_ok() {
            self.settled = self.basis.clone().map(|b| (desired, b));
            Ok(())
        } else {
            let msgs: Vec<String> = report
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.op, e.error))
                .collect();
            Err(DataplaneError::Apply(msgs.join("; ")))
        }
    }

    /// Plans `desired` against the mirror (a host-only pass while it is known) or against a
    /// fresh observation within `scope` (which refreshes the mirror when it read the whole host
    /// side), applies the ops, and takes them into the mirror.
    async fn plan_and_apply(
        &mut self,
        desired: &DesiredHost,
        scope: &Scope,
    ) -> Result<(Vec<Op>, ApplyReport), NetlinkError> {
        let mirrored = self.mirror.host().filter(|_| host_only(scope));
        let (ops, report) = match mirrored {
            Some(host) => {
                let ops = plan(desired, host);
                debug!(
                    ops = ops.len(),
                    "planned against the kernel as last read and changed since"
                );
                let report = self.dp.apply(&ops).await;
                (ops, report)
            }
            None => {
                let Reconciled {
                    observed,
                    ops,
                    report,
                } = match self.dp.reconcile(desired, scope).await {
                    Ok(done) => done,
                    Err(e) => {
                        self.mirror.forget();
                        return Err(e);
                    }
                };
                if !matches!(scope, Scope::Workloads(_)) {
                    self.mirror.refresh(observed);
                }
                (ops, report)
            }
        };
        if report.is_ok() {
            self.mirror.record(&ops);
        } else {
            self.mirror.forget();
        }
        Ok((ops, report))
    }
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
