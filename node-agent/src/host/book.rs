//! The local book: what this node has attached (containers and namespaces attached from outside),
//! with the endpoint records it published. Kept in a JSON file in the state directory, so an
//! agent restart adopts everything as it was.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shibafu_overlay::model::Endpoint;

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

/// The book and its file.
#[derive(Debug)]
pub struct Book {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

impl Book {
    /// Loads the book from `<state_dir>/local.json` (empty when the file does not exist).
    pub fn load(state_dir: &Path) -> Result<Book, BookError> {
        let path = state_dir.join("local.json");
        let entries = match fs::read(&path) {
            Ok(data) => {
                let list: Vec<Entry> =
                    serde_json::from_slice(&data).map_err(|e| BookError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                list.into_iter().map(|e| (e.name.clone(), e)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(BookError::Io { path, source }),
        };
        Ok(Book { path, entries })
    }

    /// Writes the book atomically.
    pub fn save(&self) -> Result<(), BookError> {
        self.snapshot()?.write()
    }

    /// The book as it is now, to be written later (e.g. on another thread while the kernel
    /// work of an attach runs).
    pub fn snapshot(&self) -> Result<Snapshot, BookError> {
        let list: Vec<&Entry> = self.entries.values().collect();
        let data = serde_json::to_vec(&list).map_err(|e| BookError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Snapshot {
            path: self.path.clone(),
            data,
        })
    }

    /// The file the book is saved in.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Inserts or replaces an entry.
    pub fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.name.clone(), entry);
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.entries.remove(name)
    }

    /// Every endpoint this node published.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.entries
            .values()
            .flat_map(|e| e.interfaces.iter().map(|i| &i.endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str) -> Endpoint {
        Endpoint::new("backend", name, "node1", "172.22.0.2".parse().expect("ip"))
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("sf-book-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let mut b = Book::load(&dir).expect("empty");
        assert_eq!(b.entries().count(), 0);
        b.insert(Entry {
            name: "api".into(),
            netns: dir.join("netns/api"),
            container: true,
            interfaces: vec![Iface {
                ifname: "eth0".into(),
                endpoint: endpoint("api"),
            }],
        });
        b.save().expect("save");
        let again = Book::load(&dir).expect("load");
        assert_eq!(again.get("api"), b.get("api"));
        assert_eq!(again.endpoints().count(), 1);
        fs::write(dir.join("local.json"), b"{not json").expect("write");
        assert!(matches!(Book::load(&dir), Err(BookError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}

/// A serialized book, not yet on disk.
#[derive(Debug)]
pub struct Snapshot {
    path: PathBuf,
    data: Vec<u8>,
}

impl Snapshot {
    /// Writes it next to the file and renames it over the file (atomic replace).
    pub fn write(self) -> Result<(), BookError> {
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, &self.data)
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|source| BookError::Io {
                path: self.path,
                source,
            })
    }
}
