//! The book's files: this node's workloads as JSON in `<state-dir>/local.json` (written by atomic
//! replace) and the changes since in `<state-dir>/local.journal` (one JSON record a line,
//! appended), so an agent restart adopts everything as it was. An attach appends one record
//! however many workloads the node has; once the journal holds more records than the book has
//! workloads (and at least [`COMPACT_AFTER`]), the whole book is written again and the journal
//! emptied, so a change costs a constant amount of writing on average.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shibafu_overlay::model::Endpoint;

use super::LocalWorkloads;

/// One interface of a local workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iface {
    /// Interface name inside the namespace (eth0, eth1, ...).
    pub ifname: String,
    /// The endpoint record published for it.
    pub endpoint: Endpoint,
}

/// One local workload: a container started by this agent, or a namespace attached from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Workload name (its DNS name).
    pub name: String,
    /// Its network namespace file.
    pub netns: PathBuf,
    /// True for containers this agent runs (their namespace is the agent's to remove).
    pub container: bool,
    /// Interfaces in attach order (eth0 first).
    pub interfaces: Vec<Iface>,
    /// For a namespace a runtime attached through CNI: its container id (the interfaces are
    /// then named by the runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<String>,
}

impl Entry {
    /// The endpoint records of its interfaces.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.interfaces.iter().map(|i| &i.endpoint)
    }
}

/// Errors of reading or writing the book.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The file could not be read or written.
    #[error("local state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("local state {path} is corrupt ({reason}); move it away to start empty")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// The journal is compacted once it holds this many records (or more, when the book has more
/// workloads).
pub const COMPACT_AFTER: usize = 256;

/// One change to the book, as a journal line has it: a workload as it now is, or its removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// The workload of that name is now this.
    Put(Entry),
    /// The workload of that name is gone.
    Remove(String),
}

/// What the book's writer does next, in order.
#[derive(Debug)]
pub enum BookWrite {
    /// Appends this line (a serialized [`Record`]) to the journal.
    Append(Vec<u8>),
    /// Writes these workloads as the whole book and empties the journal.
    Compact(LocalWorkloads),
}

/// The book's files in a state directory.
#[derive(Debug, Clone)]
pub struct BookFile {
    path: PathBuf,
    journal: PathBuf,
}

impl BookFile {
    /// The book of `<state_dir>/local.json` and `<state_dir>/local.journal`.
    pub fn in_dir(state_dir: &Path) -> BookFile {
        BookFile {
            path: state_dir.join("local.json"),
            journal: state_dir.join("local.journal"),
        }
    }

    /// Reads the entries (none when there is no book) with the journal's changes applied;
    /// returns them with the number of journal records read. A last line cut short (the
    /// agent stopped while appending it, before the change was acknowledged) is ignored.
    pub fn load(&self) -> Result<(Vec<Entry>, usize), BookError> {
        let mut entries: std::collections::BTreeMap<String, Entry> = match read(&self.path)? {
            Some(data) => serde_json::from_slice::<Vec<Entry>>(&data)
                .map_err(|e| self.corrupt(&self.path, e.to_string()))?
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect(),
            None => Default::default(),
        };
        let journal = read(&self.journal)?.unwrap_or_default();
        let mut records = 0;
        let mut lines = journal
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
            .peekable();
        while let Some((i, line)) = lines.next() {
            if !line.ends_with(b"\n") && lines.peek().is_none() {
                tracing::warn!(path = %self.journal.display(), "ignoring the journal's last line, cut short");
                break;
            }
            let record: Record = serde_json::from_slice(line)
                .map_err(|e| self.corrupt(&self.journal, format!("line {}: {e}", i + 1)))?;
            match record {
                Record::Put(e) => entries.insert(e.name.clone(), e),
                Record::Remove(name) => entries.remove(&name),
            };
            records += 1;
        }
        Ok((entries.into_values().collect(), records))
    }

    fn corrupt(&self, path: &Path, reason: String) -> BookError {
        BookError::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    }

    /// `record` as a journal line.
    pub fn line(&self, record: &Record) -> Result<Vec<u8>, BookError> {
        let mut line =
            serde_json::to_vec(record).map_err(|e| self.corrupt(&self.journal, e.to_string()))?;
        line.push(b'\n');
        Ok(line)
    }

    /// Does `write` (blocking; the registry's writer runs it on a thread of its own).
    pub fn write(&self, write: BookWrite) -> Result<(), BookError> {
        match write {
            BookWrite::Append(line) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal)
                .and_then(|mut f| f.write_all(&line))
                .map_err(|source| self.io(&self.journal, source)),
            BookWrite::Compact(entries) => {
                let entries: Vec<&Entry> = entries.values().collect();
                let data = serde_json::to_vec(&entries)
                    .map_err(|e| self.corrupt(&self.path, e.to_string()))?;
                let tmp = self.path.with_extension("tmp");
                fs::write(&tmp, &data)
                    .and_then(|()| fs::rename(&tmp, &self.path))
                    .map_err(|source| self.io(&self.path, source))?;
                // Replaying records the book already holds changes nothing, so a stop between
                // the rename and this loses nothing.
                match fs::remove_file(&self.journal) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(self.io(&self.journal, e))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn io(&self, path: &Path, source: std::io::Error) -> BookError {
        BookError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The file's content, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<Vec<u8>>, BookError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BookError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{endpoint, workload, TempDir};

    fn api(ip: &str) -> Entry {
        workload("api", &[endpoint("backend", "api", "node1", ip)])
    }

    fn book(entries: &[Entry]) -> LocalWorkloads {
        entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    }

    fn append(file: &BookFile, record: Record) {
        let line = file.line(&record).expect("line");
        file.write(BookWrite::Append(line)).expect("append");
    }

    #[test]
    fn the_journal_replays_over_the_book() {
        let dir = TempDir::new("book-journal");
        let file = BookFile::in_dir(&dir.0);
        assert_eq!(file.load().expect("empty"), (vec![], 0));
        let web = workload("web", &[endpoint("frontend", "web", "node1", "172.21.0.2")]);
        file.write(BookWrite::Compact(book(&[api("172.22.0.2"), web.clone()])))
            .expect("compact");
        append(&file, Record::Put(api("172.22.0.9")));
        append(&file, Record::Remove("web".into()));
        append(&file, Record::Put(web.clone()));
        append(&file, Record::Remove("web".into()));
        assert_eq!(file.load().expect("load"), (vec![api("172.22.0.9")], 4));
    }

    #[test]
    fn compaction_empties_the_journal_and_an_old_journal_changes_nothing() {
        let dir = TempDir::new("book-compact");
        let file = BookFile::in_dir(&dir.0);
        append(&file, Record::Put(api("172.22.0.2")));
        append(&file, Record::Remove("api".into()));
        append(&file, Record::Put(api("172.22.0.3")));
        let journal = fs::read(dir.0.join("local.journal")).expect("journal");
        file.write(BookWrite::Compact(book(&[api("172.22.0.3")])))
            .expect("compact");
        assert!(!dir.0.join("local.journal").exists());
        assert_eq!(file.load().expect("load"), (vec![api("172.22.0.3")], 0));
        // Stopped between writing the book and removing the journal:
        fs::write(dir.0.join("local.journal"), journal).expect("write");
        assert_eq!(file.load().expect("load").0, vec![api("172.22.0.3")]);
    }

    #[test]
    fn a_cut_last_line_is_ignored_and_damage_elsewhere_is_named() {
        let dir = TempDir::new("book-damage");
        let file = BookFile::in_dir(&dir.0);
        append(&file, Record::Put(api("172.22.0.2")));
        let mut journal = fs::read(dir.0.join("local.journal")).expect("journal");
        let whole = journal.clone();
        journal.extend_from_slice(&whole[..whole.len() / 2]);
        fs::write(dir.0.join("local.journal"), &journal).expect("write");
        assert_eq!(file.load().expect("cut"), (vec![api("172.22.0.2")], 1));
        journal = b"{not json}\n".to_vec();
        journal.extend_from_slice(&whole);
        fs::write(dir.0.join("local.journal"), &journal).expect("write");
        match file.load() {
            Err(BookError::Corrupt { path, reason }) => {
                assert!(
                    path.ends_with("local.journal") && reason.starts_with("line 1:"),
                    "{reason}"
                )
            }
            other => panic!("corrupt journal loaded: {other:?}"),
        }
        fs::write(dir.0.join("local.json"), b"{not json").expect("write");
        assert!(
            matches!(file.load(), Err(BookError::Corrupt { path, .. }) if path.ends_with("local.json"))
        );
    }
}
