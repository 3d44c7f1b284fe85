//! The book's file: this node's workloads as JSON in `<state-dir>/local.json`, written by atomic
//! replace, so an agent restart adopts everything as it was.

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

/// The book's file in a state directory.
#[derive(Debug, Clone)]
pub struct BookFile {
    path: PathBuf,
}

impl BookFile {
    /// The book of `<state_dir>/local.json`.
    pub fn in_dir(state_dir: &Path) -> BookFile {
        BookFile {
            path: state_dir.join("local.json"),
        }
    }

    /// Reads the entries (none when the file does not exist).
    pub fn load(&self) -> Result<Vec<Entry>, BookError> {
        match fs::read(&self.path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| BookError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(BookError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// `entries` serialized, to be written later (on another thread).
    pub fn snapshot<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<Snapshot, BookError> {
        let list: Vec<&Entry> = entries.into_iter().collect();
        let data = serde_json::to_vec(&list).map_err(|e| BookError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Snapshot {
            path: self.path.clone(),
            data,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("sf-book-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let file = BookFile::in_dir(&dir);
        assert!(file.load().expect("empty").is_empty());
        let entry = Entry {
            name: "api".into(),
            netns: dir.join("netns/api"),
            container: true,
            interfaces: vec![Iface {
                ifname: "eth0".into(),
                endpoint: Endpoint::new(
                    "backend",
                    "api",
                    "node1",
                    "172.22.0.2".parse().expect("ip"),
                ),
            }],
            cni: None,
        };
        file.snapshot([&entry])
            .expect("snapshot")
            .write()
            .expect("write");
        assert_eq!(file.load().expect("load"), vec![entry]);
        fs::write(dir.join("local.json"), b"{not json").expect("write");
        assert!(matches!(file.load(), Err(BookError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
