//! The local pass: an attach's or a detach's workloads applied to their namespace, planned
//! first (spliced into the settled plan when it can be) so the firewall owner can take the
//! plan's ports while the kernel is changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shibafu_overlay::netlink::Scope;
use shibafu_overlay::plan::DesiredHost;
use tracing::warn;

use super::{DataplaneError, Reconciler};

/// A plan of this node's workloads for one namespace, made before the kernel is touched.
#[derive(Debug)]
pub struct LocalPlan {
    netns: PathBuf,
    /// The plan for the namespace alone (an attach onto a settled host).
    workloads_only: Option<Arc<DesiredHost>>,
    /// The whole host's plan, when one was made.
    whole: Option<Arc<DesiredHost>>,
}

impl Reconciler {
    /// Applies this node's workloads to `netns` (an attach, a detach or its rollback):
    /// [`Reconciler::plan_local`] then [`Reconciler::apply_planned`], as the actor does
    /// without the firewall between them.
    #[cfg(test)]
    pub async fn apply_local(&mut self, netns: &Path, attach: bool) -> Result<(), DataplaneError> {
        let planned = self.plan_local(netns, attach)?;
        self.apply_planned(planned).await
    }

    /// Plans applying this node's workloads to `netns` and remembers the plan as the last one
    /// (so [`Reconciler::firewall_part`] already lists the ports it brings). For an attach onto
    /// a host whose cluster inputs and other workloads are those of the last clean reconcile,
    /// only this namespace's workloads are planned (spliced into that plan, [`super::splice`]) and
    /// only this namespace and its veths will be read ([`Scope::Workloads`]): the attach costs
    /// about the same with 1 or 1,000 containers here.
    pub fn plan_local(&mut self, netns: &Path, attach: bool) -> Result<LocalPlan, DataplaneError> {
        let netns = netns.to_path_buf();
        if !attach {
            return Ok(LocalPlan {
                netns,
                workloads_only: None,
                whole: Some(self.plan()?),
            });
        }
        if let Some(spliced) = self.spliced(&netns) {
            return Ok(LocalPlan {
                netns,
                workloads_only: Some(spliced),
                whole: None,
            });
        }
        let desired = self.plan()?;
        let settled = self
            .settled
            .as_ref()
            .is_some_and(|(s, _)| s.networks == desired.networks);
        Ok(LocalPlan {
            netns,
            workloads_only: settled.then(|| desired.clone()),
            whole: Some(desired),
        })
    }

    /// Applies a plan of [`Reconciler::plan_local`]. If the workload-only pass fails (the host
    /// drifted since: a bridge deleted by hand) the host side is reconciled too before giving up.
    pub async fn apply_planned(&mut self, planned: LocalPlan) -> Result<(), DataplaneError> {
        let only = vec![planned.netns];
        if let Some(desired) = planned.workloads_only {
            match self
                .reconcile_to(desired, Scope::Workloads(only.clone()))
                .await
            {
                Err(e) => {
                    warn!(error = %e, "workload-only attach failed; reconciling the host side")
                }
                ok => return ok,
            }
        }
        let desired = match planned.whole {
            Some(desired) => desired,
            None => self.plan()?,
        };
        self.reconcile_to(desired, Scope::Only(only)).await
    }
}
