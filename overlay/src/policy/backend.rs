//! Where a policy table is loaded and its counters read: nft on a real node, a recorder in
//! tests. [`PolicyEnforcer`] keeps what the kernel holds and loads only the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::warn;

use super::table::{
    element_changes, elements, holds, render_counter_removal, render_diff, render_full,
    render_removal, Table,
};
use crate::firewall::{ElementChange, ElementOp, FirewallError};

/// Runs policy-table scripts and reads the table's counters.
#[async_trait]
pub trait PolicyBackend: Send + Sync {
    /// Runs `script` as one transaction.
    async fn run(&self, script: String) -> Result<(), FirewallError>;
    /// Adds and deletes addresses of the table's sets in one transaction, without nft.
    async fn elements(&self, changes: &[ElementChange]) -> Result<(), FirewallError>;
    /// Packets of every named counter of the policy table; `None` when the table is missing.
    async fn counters(&self) -> Result<Option<BTreeMap<String, u64>>, FirewallError>;
}

/// Reads `nft -j list counters table inet shibafu-policy`: counter name -> packets.
pub fn parse_counters(json: &str) -> Result<BTreeMap<String, u64>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or("no \"nftables\" array")?;
    Ok(items
        .iter()
        .filter_map(|i| i.get("counter"))
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?;
            Some((name.to_string(), c.get("packets")?.as_u64()?))
        })
        .collect())
}

/// The table in the kernel and how to change it: loads a new table as the difference from the
/// one loaded last, or whole when there is none (first load, or after a failed change).
pub struct PolicyEnforcer {
    backend: Arc<dyn PolicyBackend>,
    /// What the kernel holds, counters waiting to be swept included.
    loaded: Option<Table>,
    /// Counters of `loaded` that no rule names any more.
    stale: BTreeSet<String>,
}

impl PolicyEnforcer {
    /// Nothing known to be loaded: the first load replaces whatever table is there.
    pub fn new(backend: Arc<dyn PolicyBackend>) -> PolicyEnforcer {
        PolicyEnforcer {
            backend,
            loaded: None,
            stale: BTreeSet::new(),
        }
    }

    /// Makes the kernel hold `table` (an empty table removes the policy table: networks
    /// without policies keep the fast path). Returns the script that ran, if any. A failed
    /// difference (the table was changed behind our back) is retried once as a whole table.
    pub async fn enforce(&mut self, table: &Table) -> Result<Option<String>, FirewallError> {
        if self.loaded.as_ref().is_some_and(|l| holds(l, table)) {
            return Ok(None);
        }
        let incremental = self.loaded.as_ref().is_some_and(|o| !o.chains.is_empty());
        // An endpoint coming or going anywhere is only addresses in sets: over netlink, no fork.
        if let Some(changes) = self
            .loaded
            .as_ref()
            .filter(|_| incremental)
            .and_then(|old| element_changes(old, table))
        {
            match self.backend.elements(&changes).await {
                Ok(()) => {
                    self.now_holds(table);
                    return Ok(Some(format!(
                        "{} element changes over netlink",
                        changes.len()
                    )));
                }
                Err(e) => warn!(error = %e, "changing policy set elements failed; using nft"),
            }
        }
        let mut script = match &self.loaded {
            _ if table.chains.is_empty() => render_removal(),
            Some(old) if incremental => render_diff(old, table),
            _ => self.full(table).await,
        };
        match self.backend.run(script.clone()).await {
            Ok(()) if incremental => self.now_holds(table),
            Ok(()) => self.replaced(table),
            Err(e) if incremental && !table.chains.is_empty() => {
                warn!(error = %e, "policy table change failed; loading it whole");
                self.forget();
                script = self.full(table).await;
                self.backend.run(script.clone()).await?;
                self.replaced(table);
            }
            Err(e) => {
                self.forget();
                return Err(e);
            }
        }
        Ok(Some(script))
    }

    /// After a difference from `loaded` went in: the kernel holds `table` plus the counters it
    /// no longer names (stale until swept).
    fn now_holds(&mut self, table: &Table) {
        let mut held = table.clone();
        if let Some(old) = self.loaded.take() {
            self.stale = old.counters.difference(&table.counters).cloned().collect();
            held.counters.extend(self.stale.iter().cloned());
        }
        self.loaded = Some(held);
    }

    /// After the whole table was replaced by `table`.
    fn replaced(&mut self, table: &Table) {
        self.loaded = Some(table.clone());
        self.stale.clear();
    }

    /// Deletes the counters no rule names any more (run between changes: the change itself
    /// does not wait for it). Returns how many went.
    pub async fn sweep(&mut self) -> Result<usize, FirewallError> {
        if self.stale.is_empty() {
            return Ok(0);
        }
        self.backend
            .run(render_counter_removal(&self.stale))
            .await?;
        if let Some(l) = self.loaded.as_mut() {
            l.counters.retain(|c| !self.stale.contains(c));
        }
        Ok(std::mem::take(&mut self.stale).len())
    }

    /// Are there counters waiting for [`Self::sweep`]?
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// The whole table, its counters starting from what the table in the kernel counted.
    async fn full(&self, table: &Table) -> String {
        let kept = match self.backend.counters().await {
            Ok(Some(c)) => c,
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                warn!(error = %e, "cannot read the policy counters; they start from 0");
                BTreeMap::new()
            }
        };
        render_full(table, &kept)
    }

    /// Forgets what is loaded, so the next [`Self::enforce`] loads the whole table (used when
    /// the table went missing).
    pub fn forget(&mut self) {
        self.loaded = None;
        self.stale.clear();
    }

    /// The table last loaded.
    pub fn loaded(&self) -> Option<&Table> {
        self.loaded.as_ref()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn PolicyBackend> {
        &self.backend
    }
}

/// A backend that records scripts and serves set counters.
#[derive(Debug, Default)]
pub struct FakePolicyBackend {
    scripts: Mutex<Vec<String>>,
    counters: Mutex<Option<BTreeMap<String, u64>>>,
    fail_next: Mutex<bool>,
}

impl FakePolicyBackend {
    /// Every script run so far.
    pub fn scripts(&self) -> Vec<String> {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets what [`PolicyBackend::counters`] answers.
    pub fn set_counters(&self, c: Option<BTreeMap<String, u64>>) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// Makes the next run fail (as nft does on a table changed behind our back).
    pub fn fail_next(&self) {
        *self.fail_next.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

#[async_trait]
impl PolicyBackend for FakePolicyBackend {
    async fn run(&self, script: String) -> Result<(), FirewallError> {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(script);
        let mut fail = self.fail_next.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut *fail) {
            return Err(FirewallError::Nft {
                action: "policy".into(),
                status: "exit status: 1".into(),
                stderr: "No such file or directory".into(),
            });
        }
        Ok(())
    }

    async fn counters(&self) -> Result<Option<BTreeMap<String, u64>>, FirewallError> {
        Ok(self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    /// Recorded as a script of its own, first line `# netlink`.
    async fn elements(&self, changes: &[ElementChange]) -> Result<(), FirewallError> {
        let mut script = String::from("# netlink\n");
        for c in changes {
            let verb = match c.op {
                ElementOp::Add => "add",
                ElementOp::Delete => "delete",
            };
            elements(
                &mut script,
                verb,
                &c.set,
                std::iter::once(&c.addr.to_string()),
            );
        }
        self.run(script).await
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
