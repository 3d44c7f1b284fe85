//! Reading YAML nodes as the values of a file, every error kept with the place of the offending
//! key or value, and where each part of the document built came from.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use clap::ValueEnum;

use crate::health_args::parse_port;
use crate::yaml::{Loc, Node};

/// Something wrong in the file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The offending key or value.
    pub at: Loc,
    /// What is wrong.
    pub message: String,
}

/// Where the parts of a document are in the file, by their path into the document.
#[derive(Debug, Default)]
pub struct Origins(BTreeMap<String, Loc>);

impl Origins {
    /// The place of `path`, or of the closest enclosing part that has one.
    pub fn of(&self, path: &str) -> Option<&Loc> {
        let mut p = path;
        loop {
            if let Some(loc) = self.0.get(p) {
                return Some(loc);
            }
            p = p.rsplit_once('/')?.0;
        }
    }
}

/// A node and where it is.
#[derive(Debug, Clone)]
pub struct At<'a> {
    /// The node.
    pub node: &'a Node,
    /// Where.
    pub loc: Loc,
}

/// The entries of a mapping by key, with the place of each key.
pub struct Fields<'a> {
    entries: BTreeMap<String, (Loc, At<'a>)>,
}

impl<'a> Fields<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&At<'a>> {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// Where `key` is written.
    pub fn key(&self, key: &str) -> Option<&Loc> {
        self.entries.get(key).map(|(k, _)| k)
    }
}

/// Collects errors and origins while a file is read.
#[derive(Default)]
pub struct Reader {
    errors: Vec<FileError>,
    origins: Origins,
}

impl Reader {
    /// Records an error at `at`.
    pub fn error(&mut self, at: &Loc, message: impl Into<String>) {
        self.errors.push(FileError {
            at: at.clone(),
            message: message.into(),
        });
    }

    /// Records that the document's `path` comes from `at`.
    pub fn origin(&mut self, path: impl Into<String>, at: &Loc) {
        self.origins.0.insert(path.into(), at.clone());
    }

    /// The entries of a mapping (none for an empty value); keys that are not text, not in
    /// `allowed` or given twice are errors.
    pub fn fields<'a>(&mut self, at: &At<'a>, allowed: &[&str]) -> Fields<'a> {
        let mut entries = BTreeMap::new();
        let list = match at.node {
            Node::Map(list) => list.as_slice(),
            Node::Null => &[],
            _ => {
                let keys = allowed.join(", ");
                self.error(&at.loc, format!("expected a mapping with keys {keys}"));
                &[]
            }
        };
        for (i, (k, v)) in list.iter().enumerate() {
            let key = At {
                node: k,
                loc: at.loc.key(i),
            };
            let Some(name) = self.text(&key) else {
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let msg = format!("unknown key {name:?} (expected {})", allowed.join(", "));
                self.error(&key.loc, msg);
                continue;
            }
            match entries.entry(name) {
                Entry::Occupied(e) => {
                    let msg = format!("{:?} is given twice", e.key());
                    self.error(&key.loc, msg);
                }
                Entry::Vacant(e) => {
                    let value = At {
                        node: v,
                        loc: at.loc.entry(i),
                    };
                    e.insert((key.loc, value));
                }
            }
        }
        Fields { entries }
    }

    /// A string (a number is taken as written).
    pub fn text(&mut self, at: &At<'_>) -> Option<String> {
        match at.node {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            _ => {
                self.error(&at.loc, "expected a string");
                None
            }
        }
    }

    /// A whole number that fits `T`.
    pub fn number<T: TryFrom<i64>>(&mut self, at: &At<'_>) -> Option<T> {
        match at.node {
            Node::Int(i) => T::try_from(*i)
                .map_err(|_| self.error(&at.loc, format!("{i} is out of range")))
                .ok(),
            _ => {
                self.error(&at.loc, "expected a whole number");
                None
            }
        }
    }

    /// A port, 1-65535.
    pub fn port(&mut self, at: &At<'_>) -> Option<u16> {
        let text = self.text(at)?;
        parse_port(&text).map_err(|e| self.error(&at.loc, e)).ok()
    }

    /// `true` or `false`.
    pub fn flag(&mut self, at: &At<'_>) -> Option<bool> {
        match at.node {
            Node::Bool(b) => Some(*b),
            _ => {
                self.error(&at.loc, "expected true or false");
                None
            }
        }
    }

    /// The items of a list (none for an empty value).
    pub fn list<'a>(&mut self, at: &At<'a>) -> Vec<At<'a>> {
        match at.node {
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, node)| At {
                    node,
                    loc: at.loc.item(i),
                })
                .collect(),
            Node::Null => Vec::new(),
            _ => {
                self.error(&at.loc, "expected a list");
                Vec::new()
            }
        }
    }

    /// The errors and origins found.
    pub fn finish(self) -> (Vec<FileError>, Origins) {
        (self.errors, self.origins)
    }

    /// One of the values of a command-line choice (`round-robin`, `fail-open`, ...).
    pub fn word<E: ValueEnum>(&mut self, at: &At<'_>, what: &str) -> Option<E> {
        let text = self.text(at)?;
        let found = E::from_str(&text, false).ok();
        if found.is_none() {
            let names: Vec<String> = E::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
                .collect();
            let msg = format!("invalid {what} {text:?}: use {}", names.join(", "));
            self.error(&at.loc, msg);
        }
        found
    }
}
