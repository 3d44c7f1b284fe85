//! The local registry: the single source of this node's workloads and their endpoints.
//!
//! [`Registry`] is the book in memory: committed workloads (what DNS, health checks, policies
//! and the runtime see, and what is published to etcd) and staged ones (an attach whose kernel
//! work is still running). Both are in the book's files, so a crash mid-attach loses nothing, but
//! only committed workloads are announced. The maps are persistent (`imbl`): handing the
//! workloads to an owner or staging one more costs the same with 10 or 1,000 of them. [`actor::RegistryActor`] owns it: it writes the file in
//! order on a blocking thread, publishes endpoint records, and broadcasts [`LocalChanged`] on
//! every committed change.
//!
//! [`LocalChanged`]: crate::messages::LocalChanged

pub mod actor;
pub mod book;

use std::path::Path;
use std::sync::Arc;

use book::{BookError, BookFile, BookWrite, Entry, Iface, Record, COMPACT_AFTER};
use imbl::ordmap::DiffItem;
use shibafu_overlay::model::Endpoint;

/// This node's workloads by name.
pub type LocalWorkloads = imbl::OrdMap<String, Entry>;

/// The workloads that differ from `old` to `new`, each as what it was and what it is (`None`:
/// not there), in name order; the workloads both share are not visited.
pub fn changes<'a>(
    old: &'a LocalWorkloads,
    new: &'a LocalWorkloads,
) -> impl Iterator<Item = (Option<&'a Entry>, Option<&'a Entry>)> {
    old.diff(new).map(|d| match d {
        DiffItem::Add(_, w) => (None, Some(w)),
        DiffItem::Remove(_, w) => (Some(w), None),
        DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
    })
}

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
    /// Records in the journal since the book was last written whole.
    journaled: usize,
}

impl Registry {
    /// Loads the book of `state_dir` (empty when there is none); everything in it is committed.
    pub fn load(state_dir: &Path) -> Result<Registry, BookError> {
        let file = BookFile::in_dir(state_dir);
        let (entries, journaled) = file.load()?;
        Ok(Registry {
            file,
            committed: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
            staged: LocalWorkloads::new(),
            journaled,
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
        for (k, v) in &self.staged {
            all.insert(k.clone(), v.clone());
        }
        Arc::new(all)
    }

    /// The book's files.
    pub fn file(&self) -> &BookFile {
        &self.file
    }

    /// The write that records what the workload `name` now is among the effective ones: a
    /// journal line, or the whole book once the journal holds more records than the book has
    /// workloads (and at least [`COMPACT_AFTER`]).
    pub fn book_write(&mut self, name: &str) -> Result<BookWrite, BookError> {
        if self.journaled >= COMPACT_AFTER.max(self.committed.len()) {
            self.journaled = 0;
            return Ok(BookWrite::Compact((*self.effective()).clone()));
        }
        let record = match self.staged.get(name).or_else(|| self.committed.get(name)) {
            Some(e) => Record::Put(e.clone()),
            None => Record::Remove(name.to_string()),
        };
        self.journaled += 1;
        self.file.line(&record).map(BookWrite::Append)
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
