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
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        Network {
            schema: SCHEMA_VERSION,
            name: name.into(),
            subnet: subnet.parse().expect("subnet"),
            subnet6: None,
            vni: 4096,
            zone: format!("{name}.local"),
            mtu: None,
            internal: false,
            forwarders: vec![],
        }
    }

    fn node(name: &str) -> Node {
        Node {
            schema: SCHEMA_VERSION,
            name: name.into(),
            underlay: "10.0.0.1".parse().expect("ip"),
            version: "test".into(),
            wg_pubkey: None,
            started_at: 1,
        }
    }

    fn ep(network: &str, id: &str, ip: &str) -> Endpoint {
        Endpoint {
            schema: SCHEMA_VERSION,
            id: id.into(),
            network: network.into(),
            name: id.into(),
            aliases: vec![],
            node: "n1".into(),
            ipv4: ip.parse().expect("ip"),
            ipv6: None,
            mac: "02:00:00:00:00:01".into(),
            service: None,
            port: None,
            weight: 1,
        }
    }

    fn block(network: &str, cidr: &str, node: &str) -> IpamBlock {
        IpamBlock {
            schema: SCHEMA_VERSION,
            network: network.into(),
            cidr: cidr.parse().expect("cidr"),
            node: node.into(),
        }
    }

    fn kv<T: serde::Serialize>(key: &Key, value: &T, rev: i64) -> KeyValue {
        raw(key, serde_json::to_vec(value).expect("json"), rev)
    }

    fn raw(key: &Key, value: Vec<u8>, rev: i64) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    fn ep_key(network: &str, id: &str) -> Key {
        Key::Endpoint {
            network: network.into(),
            id: id.into(),
        }
    }

    fn block_key(network: &str, cidr: &str) -> Key {
        Key::IpamBlock {
            network: network.into(),
            cidr: cidr.into(),
        }
    }

    fn base_kvs() -> Vec<KeyValue> {
        vec![
            kv(&Key::Network("a".into()), &net("a", "10.1.0.0/24"), 2),
            kv(&Key::Network("b".into()), &net("b", "10.2.0.0/24"), 3),
            kv(&Key::Node("n1".into()), &node("n1"), 4),
            kv(&ep_key("a", "x"), &ep("a", "x", "10.1.0.2"), 5),
            kv(&Key::Link("a".into(), "b".into()), &Link::new("a", "b"), 6),
            kv(
                &block_key("a", "10.1.0.0/26"),
                &block("a", "10.1.0.0/26", "n1"),
                7,
            ),
            raw(&Key::Policy("p".into()), b"{}".to_vec(), 8),
            raw(&ep_key("a", "junk"), b"not json".to_vec(), 9),
        ]
    }

    fn snapshot(kvs: Vec<KeyValue>, revision: i64) -> ClusterChange {
        ClusterChange::Snapshot { kvs, revision }
    }

    #[test]
    fn first_snapshot_announces_everything_in_dependency_order() {
        let mut s = ClusterState::new();
        let changes = s.apply(&snapshot(base_kvs(), 9));
        let kinds: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                StateChange::NetworkAdded(_) => "net",
                StateChange::NodeUp(_) => "node",
                StateChange::BlockClaimed(_) => "block",
                StateChange::EndpointAdded(_) => "ep",
                StateChange::LinkAdded(_) => "link",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["net", "net", "node", "block", "ep", "link"]);
        assert_eq!(s.revision(), 9);
        assert_eq!(s.endpoints().len(), 1, "the malformed endpoint is skipped");
        assert!(s.linked("b", "a"));
        assert_eq!(s.endpoints_of("a").count(), 1);
        assert_eq!(s.endpoints_of("b").count(), 0);
        assert_eq!(s, ClusterState::from_kvs(&base_kvs(), 9));
    }

    #[test]
    fn events_are_diffed() {
        let mut s = ClusterState::from_kvs(&base_kvs(), 9);
        let put = |e: Endpoint, rev| WatchEvent::Put(kv(&ep_key("a", &e.id), &e, rev));
        let added = s.apply(&ClusterChange::Events(vec![put(
            ep("a", "y", "10.1.0.3"),
            10,
        )]));
        assert_eq!(
            added,
            vec![StateChange::EndpointAdded(ep("a", "y", "10.1.0.3"))]
        );
        let same = s.apply(&ClusterChange::Events(vec![put(
            ep("a", "y", "10.1.0.3"),
            11,
        )]));
        assert!(same.is_empty(), "an identical rewrite is no change");
        let moved = s.apply(&ClusterChange::Events(vec![put(
            ep("a", "y", "10.1.0.4"),
            12,
        )]));
        assert_eq!(
            moved,
            vec![StateChange::EndpointUpdated {
                old: ep("a", "y", "10.1.0.3"),
                new: ep("a", "y", "10.1.0.4")
            }]
        );
        let gone = s.apply(&ClusterChange::Events(vec![
            WatchEvent::Delete {
                key: ep_key("a", "y").to_string(),
                mod_revision: 13,
            },
            WatchEvent::Delete {
                key: Key::Node("n1".into()).to_string(),
                mod_revision: 13,
            },
            WatchEvent::Delete {
                key: "/elsewhere".into(),
                mod_revision: 13,
            },
        ]));
        assert_eq!(
            gone,
            vec![
                StateChange::EndpointRemoved(ep("a", "y", "10.1.0.4")),
                StateChange::NodeDown(node("n1"))
            ]
        );
        assert_eq!(s.revision(), 13);
    }

    #[test]
    fn resnapshot_only_announces_differences() {
        let mut s = ClusterState::from_kvs(&base_kvs(), 9);
        let mut kvs = base_kvs();
        kvs.retain(|kv| !kv.key.contains("/links/") && !kv.key.contains("/nodes/"));
        let mut b = net("b", "10.2.0.0/24");
        b.mtu = Some(1400);
        kvs.push(kv(&Key::Network("b".into()), &b, 20));
        kvs.push(kv(&ep_key("b", "z"), &ep("b", "z", "10.2.0.2"), 21));
        let changes = s.apply(&snapshot(kvs, 21));
        assert_eq!(
            changes,
            vec![
                StateChange::LinkRemoved(Link::new("a", "b")),
                StateChange::NodeDown(node("n1")),
                StateChange::NetworkUpdated {
                    old: net("b", "10.2.0.0/24"),
                    new: b
                },
                StateChange::EndpointAdded(ep("b", "z", "10.2.0.2")),
            ]
        );
        assert_eq!(s.revision(), 21);
    }

    #[test]
    fn bad_values_are_skipped_and_count_as_absent() {
        let mut s = ClusterState::from_kvs(&base_kvs(), 9);
        let mut future = serde_json::to_value(ep("a", "x", "10.1.0.2")).expect("json");
        future["schema"] = 2.into();
        let events = vec![
            WatchEvent::Put(kv(&ep_key("a", "x"), &future, 10)),
            WatchEvent::Put(kv(&ep_key("a", "w"), &ep("a", "other-id", "10.1.0.9"), 11)),
            WatchEvent::Put(kv(&Key::Network("c".into()), &net("d", "10.3.0.0/24"), 12)),
            WatchEvent::Put(raw(&Key::Node("n2".into()), b"{\"schema\":1}".to_vec(), 13)),
        ];
        let changes = s.apply(&ClusterChange::Events(events));
        assert_eq!(
            changes,
            vec![StateChange::EndpointRemoved(ep("a", "x", "10.1.0.2"))],
            "an unreadable rewrite removes the old value; other bad values are skipped"
        );
        assert_eq!(s.networks().len(), 2);
        assert_eq!(s.nodes().len(), 1);
    }

    #[test]
    fn blocks_are_tracked_by_network_and_cidr() {
        let mut s = ClusterState::new();
        let claimed = block("a", "10.1.0.64/26", "n2");
        let key = block_key("a", "10.1.0.64/26");
        let c = s.apply(&ClusterChange::Events(vec![WatchEvent::Put(kv(
            &key, &claimed, 5,
        ))]));
        assert_eq!(c, vec![StateChange::BlockClaimed(claimed.clone())]);
        let cidr: Ipv4Net = "10.1.0.64/26".parse().expect("cidr");
        assert_eq!(s.blocks().get(&("a".to_string(), cidr)), Some(&claimed));
        let c = s.apply(&ClusterChange::Events(vec![WatchEvent::Delete {
            key: key.to_string(),
            mod_revision: 6,
        }]));
        assert_eq!(c, vec![StateChange::BlockReleased(claimed)]);
    }
}
