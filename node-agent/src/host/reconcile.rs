//! Reconciling the host with the cluster state: the desired state from the cluster and the book,
//! the kernel by diff, and the firewall when its spec changes.

use std::path::Path;

use shibafu_overlay::firewall::FirewallSpec;
use shibafu_overlay::model::{self, Endpoint, Network};
use shibafu_overlay::netlink::{reconcile, Scope};
use shibafu_overlay::plan::{DesiredHost, HostInputs, LocalContainer, LocalInterface};
use tracing::{debug, info, warn};

use super::book::BookError;
use super::{Host, HostError};

impl Host {
    /// Saves the book and applies the desired state for one namespace (plus the host side). The
    /// kernel is reconciled even when the book cannot be saved (a rollback must still undo).
    pub(super) async fn apply_local(&mut self, netns: &Path) -> Result<(), HostError> {
        let saved = self.book.save();
        let applied = self.reconcile(Scope::Only(vec![netns.to_path_buf()])).await;
        saved?;
        applied
    }

    /// Saves the book and applies an attach to `netns`. When the host side wants what the last
    /// clean reconcile applied, only this workload is read and planned ([`Scope::Workloads`]):
    /// the attach costs the same with 1 or 500 containers on the host.
    /// The book is written on a blocking thread meanwhile, and waited for before returning. If
    /// the workload-only pass fails (the host drifted since: a bridge deleted by hand), the
    /// whole host side is reconciled before giving up.
    pub(super) async fn apply_attach(&mut self, netns: &Path) -> Result<(), HostError> {
        let desired = self.desired()?;
        let snapshot = self.book.snapshot()?;
        let save = tokio::task::spawn_blocking(move || snapshot.write());
        let only = vec![netns.to_path_buf()];
        let applied = match &self.settled {
            Some(s) if s.networks == desired.networks => {
                let fast = self
                    .reconcile_to(desired.clone(), Scope::Workloads(only.clone()))
                    .await;
                match fast {
                    Err(e) => {
                        warn!(error = %e, "workload-only attach failed; reconciling the host side");
                        self.reconcile_to(desired, Scope::Only(only)).await
                    }
                    ok => ok,
                }
            }
            _ => self.reconcile_to(desired, Scope::Only(only)).await,
        };
        let saved = save
            .await
            .map_err(|e| BookError::Io {
                path: self.book.path().to_path_buf(),
                source: std::io::Error::other(e),
            })
            .and_then(|r| r);
        applied.and(saved.map_err(HostError::from))
    }

    /// Builds the desired state from the cluster and the book, and applies the difference.
    pub async fn reconcile(&mut self, scope: Scope) -> Result<(), HostError> {
        let desired = self.desired()?;
        self.reconcile_to(desired, scope).await
    }

    /// Reconciles the host side after a cluster change. When the desired state is the one the
    /// last clean reconcile applied (the watch echoing this node's own endpoints, or a change
    /// elsewhere in the cluster that concerns no network here) the kernel is not read at all;
    /// drift made by others is the periodic full resync's job.
    pub async fn reconcile_change(&mut self) -> Result<(), HostError> {
        let desired = self.desired()?;
        if self.settled.as_ref() == Some(&desired) {
            debug!("cluster change leaves the desired dataplane as it is");
            return self.reconcile_firewall(false).await;
        }
        self.reconcile_to(desired, Scope::Only(vec![])).await
    }

    async fn reconcile_to(&mut self, desired: DesiredHost, scope: Scope) -> Result<(), HostError> {
        self.settled = None;
        let (ops, report) = reconcile(self.dp.as_ref(), &desired, &scope).await?;
        if !ops.is_empty() {
            info!(
                ops = ops.len(),
                applied = report.applied,
                failed = report.errors.len(),
                "dataplane reconciled"
            );
        }
        // Checking that nobody altered the table forks `nft`: only on full resyncs.
        self.reconcile_firewall(matches!(scope, Scope::All)).await?;
        if report.is_ok() {
            self.settled = Some(desired);
            Ok(())
        } else {
            let msgs: Vec<String> = report
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.op, e.error))
                .collect();
            Err(HostError::Apply(msgs.join("; ")))
        }
    }

    async fn reconcile_firewall(&mut self, check: bool) -> Result<(), HostError> {
        let networks: Vec<Network> = self.state.networks().values().cloned().collect();
        let links: Vec<model::Link> = self.state.links().values().cloned().collect();
        let spec = FirewallSpec::from_model(&networks, &links, None)?;
        if self.firewall.as_ref() != Some(&spec) {
            self.fw.apply(&spec).await?;
            self.firewall = Some(spec);
        } else if check && self.fw.ensure().await? {
            warn!("shibafu's nftables table was changed or removed by someone else; restored");
        }
        Ok(())
    }

    fn desired(&self) -> Result<DesiredHost, HostError> {
        let networks: Vec<Network> = self.state.networks().values().cloned().collect();
        let nodes: Vec<model::Node> = self.state.nodes().values().cloned().collect();
        let own: Vec<Endpoint> = self.book.endpoints().cloned().collect();
        let mut endpoints: Vec<Endpoint> = self
            .state
            .endpoints()
            .values()
            .filter(|e| e.node != self.cfg.node)
            .cloned()
            .collect();
        endpoints.extend(own);
        let containers: Vec<LocalContainer> = self
            .book
            .entries()
            .filter(|e| {
                e.interfaces
                    .iter()
                    .all(|i| self.state.networks().contains_key(&i.endpoint.network))
            })
            .map(|e| LocalContainer {
                netns: e.netns.clone(),
                interfaces: e
                    .interfaces
                    .iter()
                    .map(|i| LocalInterface {
                        network: i.endpoint.network.clone(),
                        endpoint_id: i.endpoint.id.clone(),
                        ifname: i.ifname.clone(),
                    })
                    .collect(),
            })
            .collect();
        let mut desired = DesiredHost::build(&HostInputs {
            node: &self.cfg.node,
            underlay: self.cfg.underlay,
            underlay_mtu: self.cfg.underlay_mtu,
            networks: &networks,
            nodes: &nodes,
            endpoints: &endpoints,
            containers: &containers,
        })?;
        desired.bridge_netfilter_off = self.cfg.bridge_netfilter_off;
        Ok(desired)
    }
}
