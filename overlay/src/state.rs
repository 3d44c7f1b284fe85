//! `ClusterState`: the typed view of `/shibafu/v1/` every agent keeps, updated by diff.
//!
//! Feed it the [`ClusterChange`]s of the resilient watch; it answers with the typed
//! [`StateChange`]s that actually happened. A `Snapshot` (first list, or re-list after
//! compaction) is diffed against what is held, so unchanged things are not announced again.
//! Values that fail to parse, carry an unknown schema version or disagree with their key are
//! logged and treated as absent: the state always equals what a fresh list would give.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::model::{Endpoint, IpamBlock, Link, Network, Node, SCHEMA_VERSION};
use crate::store::keys::Key;
use crate::store::{ClusterChange, KeyValue, WatchEvent};

/// A typed change of the cluster state, in the order consumers should apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// A network appeared.
    NetworkAdded(Network),
    /// A network's spec changed.
    NetworkUpdated {
        /// Previous spec.
        old: Network,
        /// New spec.
        new: Network,
    },
    /// A network disappeared.
    NetworkRemoved(Network),
    /// A node registered.
    NodeUp(Node),
    /// A registered node changed its record (restart, new underlay address, ...).
    NodeUpdated {
        /// Previous record.
        old: Node,
        /// New record.
        new: Node,
    },
    /// A node's record disappeared (lease expired or node deregistered).
    NodeDown(Node),
    /// An endpoint appeared.
    EndpointAdded(Endpoint),
    /// An endpoint changed.
    EndpointUpdated {
        /// Previous endpoint.
        old: Endpoint,
        /// New endpoint.
        new: Endpoint,
    },
    /// An endpoint disappeared.
    EndpointRemoved(Endpoint),
    /// Two networks were linked.
    LinkAdded(Link),
    /// Two networks were isolated again.
    LinkRemoved(Link),
    /// A node claimed an IPAM block.
    BlockClaimed(IpamBlock),
    /// An IPAM block's record changed (another owner).
    BlockUpdated {
        /// Previous record.
        old: IpamBlock,
        /// New record.
        new: IpamBlock,
    },
    /// An IPAM block was released or reclaimed.
    BlockReleased(IpamBlock),
}

/// The typed cluster state, as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    networks: BTreeMap<String, Network>,
    nodes: BTreeMap<String, Node>,
    endpoints: BTreeMap<(String, String), Endpoint>,
    links: BTreeMap<(String, String), Link>,
    blocks: BTreeMap<(String, Ipv4Net), IpamBlock>,
    revision: i64,
}

/// One parsed value of a tracked key.
enum Entry {
    Network(Network),
    Node(Node),
    Endpoint(Endpoint),
    Link(Link),
    Block(IpamBlock),
}

#[derive(Deserialize)]
struct Versioned {
    schema: u32,
}

impl ClusterState {
    /// An empty state (revision 0).
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// Builds a state from a list of key-values (bad values are logged and skipped).
    pub fn from_kvs(kvs: &[KeyValue], revision: i64) -> ClusterState {
        let mut state = ClusterState {
            revision,
            ..ClusterState::default()
        };
        for kv in kvs {
            if let Some((key, Some(entry))) = parse_kv(kv) {
                state.upsert(key, entry);
            }
        }
        state
    }

    /// Store revision this state reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Networks by name.
    pub fn networks(&self) -> &BTreeMap<String, Network> {
        &self.networks
    }

    /// Registered (live) nodes by name.
    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    /// Endpoints by (network, endpoint id).
    pub fn endpoints(&self) -> &BTreeMap<(String, String), Endpoint> {
        &self.endpoints
    }

    /// Network links by (a, b), a < b.
    pub fn links(&self) -> &BTreeMap<(String, String), Link> {
        &self.links
    }

    /// IPAM blocks by (network, block).
    pub fn blocks(&self) -> &BTreeMap<(String, Ipv4Net), IpamBlock> {
        &self.blocks
    }

    /// Endpoints of one network.
    pub fn endpoints_of<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .range((network.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == network)
            .map(|(_, e)| e)
    }

    /// Are two networks linked (in either order)?
    pub fn linked(&self, x: &str, y: &str) -> bool {
        let l = Link::new(x, y);
        self.links.contains_key(&(l.a, l.b))
    }

    /// Applies one change of the resilient watch; returns what actually changed.
    pub fn apply(&mut self, change: &ClusterChange) -> Vec<StateChange> {
        match change {
            ClusterChange::Snapshot { kvs, revision } => {
                let next = ClusterState::from_kvs(kvs, *revision);
                let changes = self.diff(&next);
                *self = next;
                changes
            }
            ClusterChange::Events(events) => {
                let mut changes = Vec::new();
                for ev in events {
                    self.revision = self.revision.max(ev.revision());
                    changes.extend(self.apply_event(ev));
                }
                changes
            }
        }
    }

    fn apply_event(&mut self, ev: &WatchEvent) -> Option<StateChange> {
        match ev {
            WatchEvent::Put(kv) => match parse_kv(kv)? {
                (key, Some(entry)) => self.upsert(key, entry),
                // A value that no longer parses: the key counts as absent.
                (key, None) => self.remove(&key),
            },
            WatchEvent::Delete { key, .. } => self.remove(&Key::parse(key)?),
        }
    }

    fn upsert(&mut self, key: Key, entry: Entry) -> Option<StateChange> {
        use StateChange as C;
        match (key, entry) {
            (Key::Network(n), Entry::Network(v)) => {
                upsert_in(&mut self.networks, n, v, C::NetworkAdded, |old, new| {
                    C::NetworkUpdated { old, new }
                })
            }
            (Key::Node(n), Entry::Node(v)) => {
                upsert_in(&mut self.nodes, n, v, C::NodeUp, |old, new| {
                    C::NodeUpdated { old, new }
                })
            }
            (Key::Endpoint { network, id }, Entry::Endpoint(v)) => upsert_in(
                &mut self.endpoints,
                (network, id),
                v,
                C::EndpointAdded,
                |old, new| C::EndpointUpdated { old, new },
            ),
            (Key::Link(a, b), Entry::Link(v)) => {
                upsert_in(&mut self.links, (a, b), v, C::LinkAdded, |_, new| {
                    C::LinkAdded(new)
                })
            }
            (Key::IpamBlock { network, .. }, Entry::Block(v)) => upsert_in(
                &mut self.blocks,
                (network, v.cidr),
                v,
                C::BlockClaimed,
                |old, new| C::BlockUpdated { old, new },
            ),
            _ => None,
        }
    }

    fn remove(&mut self, key: &Key) -> Option<StateChange> {
        match key {
            Key::Network(n) => self.networks.remove(n).map(StateChange::NetworkRemoved),
            Key::Node(n) => self.nodes.remove(n).map(StateChange::NodeDown),
            Key::Endpoint { network, id } => self
                .endpoints
                .remove(&(network.clone(), id.clone()))
                .map(StateChange::EndpointRemoved),
            Key::Link(a, b) => self
                .links
                .remove(&(a.clone(), b.clone()))
                .map(StateChange::LinkRemoved),
            Key::IpamBlock { network, cidr } => {
                let cidr: Ipv4Net = cidr.parse().ok()?;
                self.blocks
                    .remove(&(network.clone(), cidr))
                    .map(StateChange::BlockReleased)
            }
            // Keys this state does not track (health, policies, guards).
            _ => None,
        }
    }

    /// What turns `self` into `next`: removals first (dependents before what they depend
    /// on), then additions and updates (dependencies first).
    fn diff(&self, next: &ClusterState) -> Vec<StateChange> {
        use StateChange as C;
        let mut out = Vec::new();
        removed(&self.links, &next.links, C::LinkRemoved, &mut out);
        removed(
            &self.endpoints,
            &next.endpoints,
            C::EndpointRemoved,
            &mut out,
        );
        removed(&self.blocks, &next.blocks, C::BlockReleased, &mut out);
        removed(&self.nodes, &next.nodes, C::NodeDown, &mut out);
        removed(&self.networks, &next.networks, C::NetworkRemoved, &mut out);
        let mut scratch = self.clone();
        for (k, v) in &next.networks {
            out.extend(scratch.upsert(Key::Network(k.clone()), Entry::Network(v.clone())));
        }
        for (k, v) in &next.nodes {
            out.extend(scratch.upsert(Key::Node(k.clone()), Entry::Node(v.clone())));
        }
        for ((network, cidr), v) in &next.blocks {
            let key = Key::IpamBlock {
                network: network.clone(),
                cidr: cidr.to_string(),
            };
            out.extend(scratch.upsert(key, Entry::Block(v.clone())));
        }
        for ((network, id), v) in &next.endpoints {
            let key = Key::Endpoint {
                network: network.clone(),
                id: id.clone(),
            };
            out.extend(scratch.upsert(key, Entry::Endpoint(v.clone())));
        }
        for ((a, b), v) in &next.links {
            out.extend(scratch.upsert(Key::Link(a.clone(), b.clone()), Entry::Link(v.clone())));
        }
        out
    }
}

fn upsert_in<K: Ord, V: PartialEq + Clone>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: V,
    added: fn(V) -> StateChange,
    updated: fn(V, V) -> StateChange,
) -> Option<StateChange> {
    match map.insert(key, value.clone()) {
        None => Some(added(value)),
        Some(old) if old != value => Some(updated(old, value)),
        Some(_) => None,
    }
}

fn removed<K: Ord, V: Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    change: fn(V) -> StateChange,
    out: &mut Vec<StateChange>,
) {
    out.extend(
        old.iter()
            .filter(|(k, _)| !new.contains_key(k))
            .map(|(_, v)| change(v.clone())),
    );
}

/// Parses a stored value: `None` for keys outside the schema; `(key, None)` for a tracked key
/// whose value is unusable (logged); `(key, Some(entry))` otherwise.
fn parse_kv(kv: &KeyValue) -> Option<(Key, Option<Entry>)> {
    let Some(key) = Key::parse(&kv.key) else {
        debug!(key = %kv.key, "ignoring key outside the v1 schema");
        return None;
    };
    let entry = match parse_entry(&key, &kv.value) {
        Ok(entry) => entry,
        Err(reason) => {
            warn!(key = %kv.key, revision = kv.mod_revision, %reason, "skipping stored value");
            None
        }
    };
    Some((key, entry))
}

fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    let v: Versioned = serde_json::from_slice(value).map_err(|e| format!("malformed: {e}"))?;
    if v.schema != SCHEMA_VERSION {
        return Err(format!(
            "unknown schema version {} (this build reads {SCHEMA_VERSION})",
            v.schema
        ));
    }
    serde_json::from_slice(value).map_err(|e| format!("malformed: {e}"))
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("value does not match its key ({what})"))
    }
}

fn parse_entry(key: &Key, value: &[u8]) -> Result<Option<Entry>, String> {
    Ok(Some(match key {
        Key::Network(n) => {
            let v: Network = decode(value)?;
            check(&v.name == n, "name")?;
            Entry::Network(v)
        }
        Key::Node(n) => {
            let v: Node = decode(value)?;
            check(&v.name == n, "name")?;
            Entry::Node(v)
        }
        Key::Endpoint { network, id } => {
            let v: Endpoint = decode(value)?;
            check(&v.network == network && &v.id == id, "network/id")?;
            Entry::Endpoint(v)
        }
        Key::Link(a, b) => {
            let v: Link = decode(value)?;
            check(&v.a == a && &v.b == b, "a+b")?;
            Entry::Link(v)
        }
        Key::IpamBlock { network, cidr } => {
            let v: IpamBlock = decode(value)?;
            check(
                &v.network == network && v.cidr.to_string() == *cidr,
                "network/cidr",
            )?;
            Entry::Block(v)
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
