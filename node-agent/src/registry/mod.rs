//! The local registry: the single source of this node's workloads and their endpoints.
//!
//! [`Registry`] is the book in memory: committed workloads (what DNS, health checks, policies
//! and the runtime see, and what is published to etcd) and staged ones (an attach whose kernel
//! work is still running). Both are in the file, so a crash mid-attach loses nothing, but only
//! committed workloads are announced. [`actor::RegistryActor`] owns it: it writes the file in
//! order on a blocking thread, publishes endpoint records, and broadcasts [`LocalChanged`] on
//! every committed change.
//!
//! [`LocalChanged`]: crate::messages::LocalChanged

pub mod actor;
pub mod book;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use book::{BookError, BookFile, Entry, Iface, Snapshot};
use shibafu_overlay::model::Endpoint;

/// This node's workloads by name.
pub type LocalWorkloads = BTreeMap<String, Entry>;

/// Errors of changing the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such workload, or it is not on that network.
    #[error("no container or attachment named {0:?} on this node; see `shibafu ps`")]
    Unknown(String),
    /// The book could not be written.
    #[error(transparent)]
    Book(#[from] BookError),
}

/// What a removal took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The workload as it was.
    pub before: Entry,
    /// The interfaces removed.
    pub gone: Vec<Iface>,
}

/// The book in memory; see the module documentation.
#[derive(Debug)]
pub struct Registry {
    file: BookFile,
    committed: LocalWorkloads,
    staged: LocalWorkloads,
}

impl Registry {
    /// Loads the book of `state_dir` (empty when there is none); everything in it is committed.
    pub fn load(state_dir: &Path) -> Result<Registry, BookError> {
        let file = BookFile::in_dir(state_dir);
        let committed = file
            .load()?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        Ok(Registry {
            file,
            committed,
            staged: LocalWorkloads::new(),
        })
    }

    /// The committed workload named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.committed.get(name)
    }

    /// Committed workloads.
    pub fn workloads(&self) -> &LocalWorkloads {
        &self.committed
    }

    /// Every endpoint of the committed workloads.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.committed.values().flat_map(Entry::endpoints)
    }

    /// What the kernel should hold: committed workloads, with staged ones in their place.
    pub fn effective(&self) -> Arc<LocalWorkloads> {
        let mut all = self.committed.clone();
        all.extend(self.staged.iter().map(|(k, v)| (k.clone(), v.clone())));
        Arc::new(all)
    }

    /// The file content of the effective workloads.
    pub fn snapshot(&self) -> Result<Snapshot, BookError> {
        self.file.snapshot(self.effective().values())
    }

    /// Stages `entry` (replacing a committed workload of that name once committed).
    pub fn stage(&mut self, entry: Entry) {
        self.staged.insert(entry.name.clone(), entry);
    }

    /// Commits the staged workload `name`; returns the committed entry it replaced, and the new
    /// one. `None` when nothing of that name is staged.
    pub fn commit(&mut self, name: &str) -> Option<(Option<Entry>, Entry)> {
        let entry = self.staged.remove(name)?;
        let old = self.committed.insert(name.to_string(), entry.clone());
        Some((old, entry))
    }

    /// Drops the staged workload `name`; the committed one (if any) stays as it was.
    pub fn abort(&mut self, name: &str) -> Option<Entry> {
        self.staged.remove(name)
    }

    /// Removes a committed workload's interface on `network`, or the whole workload when
    /// `network` is `None` (or it was its last interface).
    pub fn remove(&mut self, name: &str, network: Option<&str>) -> Result<Removed, RegistryError> {
        let before = self
            .committed
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let (gone, kept): (Vec<Iface>, Vec<Iface>) = before
            .interfaces
            .iter()
            .cloned()
            .partition(|i| network.is_none_or(|n| i.endpoint.network == n));
        if gone.is_empty() {
            return Err(RegistryError::Unknown(format!(
                "{name} on network {}",
                network.unwrap_or("")
            )));
        }
        if kept.is_empty() {
            self.committed.remove(name);
        } else {
            let after = Entry {
                interfaces: kept,
                ..before.clone()
            };
            self.committed.insert(name.to_string(), after);
        }
        Ok(Removed { before, gone })
    }
}

#[cfg(test)]
mod tests;
