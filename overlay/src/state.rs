//! `ClusterState`: the typed view of `/shibafu/v1/` every agent keeps, updated by diff.
//!
//! Feed it the [`ClusterChange`]s of the resilient watch; it answers with the typed
//! [`StateChange`]s that actually happened. A `Snapshot` (first list, or re-list after
//! compaction) is diffed against what is held, so unchanged things are not announced again.
//! Values that fail [`decode`] (malformed, an unknown schema version, or not matching their
//! key) are logged and treated as absent: the state always equals what a fresh list would give.
//!
//! The kinds of object the state tracks are listed once, in the `kinds!` invocation below: a
//! new kind is one line there plus its [`Object`] impl beside its type.
//!
//! The tables are persistent maps: cloning a state (every subscriber holds one, and the
//! StoreActor writes a new one per change) shares everything unchanged, so a change costs in
//! proportion to itself, not to the size of the cluster.

use imbl::OrdMap;

use ipnet::Ipv4Net;
use tracing::{debug, warn};

use crate::model::{
    decode, CoordinatorRecord, Endpoint, Health, IpamBlock, Link, Network, NetworkProblem, Node,
    Object, Policy, Rotation, Service, TunnelStatus,
};
use crate::store::keys::Key;

/// Stored values skipped as unusable since this process started, by kind (for metrics).
static SKIPPED: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn count_skipped(kind: &'static str) {
    let mut m = SKIPPED.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(kind).or_default() += 1;
}

/// How many stored values this process skipped as unusable (garbage, a wrong or newer schema,
/// a value under the wrong key), by kind (`networks`, `endpoints`, ...).
pub fn skipped_values() -> Vec<(&'static str, u64)> {
    let m = SKIPPED.lock().unwrap_or_else(|p| p.into_inner());
    m.iter().map(|(k, v)| (*k, *v)).collect()
}
use crate::store::{ClusterChange, KeyValue, WatchEvent};
use crate::telemetry::Trace;

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// It appeared.
    Added(T),
    /// Its value changed.
    Updated {
        /// Previous value.
        old: T,
        /// New value.
        new: T,
    },
    /// It disappeared (deleted, its lease expired, or its value became unusable).
    Removed(T),
}

impl<T> Change<T> {
    /// The value before the change, if it existed.
    pub fn before(&self) -> Option<&T> {
        match self {
            Change::Added(_) => None,
            Change::Updated { old, .. } | Change::Removed(old) => Some(old),
        }
    }

    /// The value after the change, if it still exists.
    pub fn after(&self) -> Option<&T> {
        match self {
            Change::Added(new) | Change::Updated { new, .. } => Some(new),
            Change::Removed(_) => None,
        }
    }

    /// The values before and after (one or two).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.before().into_iter().chain(self.after())
    }
}

/// How the state indexes a kind: by an id taken from the value or from its key.
pub trait Indexed: Object {
    /// The table index.
    type Id: Ord + Clone;
    /// The index of this value.
    fn id(&self) -> Self::Id;
    /// The index of the value stored at `key`, if `key` is of this kind.
    fn id_of(key: &Key) -> Option<Self::Id>;
}

impl Indexed for Network {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Network(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for Node {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Node(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for Endpoint {
    type Id = (String, String);
    fn id(&self) -> (String, String) {
        (self.network.clone(), self.id.clone())
    }
    fn id_of(key: &Key) -> Option<(String, String)> {
        match key {
            Key::Endpoint { network, id } => Some((network.clone(), id.clone())),
            _ => None,
        }
    }
}

impl Indexed for Link {
    type Id = (String, String);
    fn id(&self) -> (String, String) {
        (self.a.clone(), self.b.clone())
    }
    fn id_of(key: &Key) -> Option<(String, String)> {
        match key {
            Key::Link(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        }
    }
}

impl Indexed for IpamBlock {
    type Id = (String, Ipv4Net);
    fn id(&self) -> (String, Ipv4Net) {
        (self.network.clone(), self.cidr)
    }
    fn id_of(key: &Key) -> Option<(String, Ipv4Net)> {
        match key {
            Key::IpamBlock { network, cidr } => Some((network.clone(), cidr.parse().ok()?)),
            _ => None,
        }
    }
}

impl Indexed for Service {
    type Id = (String, String);
    fn id(&self) -> (String, String) {
        (self.network.clone(), self.name.clone())
    }
    fn id_of(key: &Key) -> Option<(String, String)> {
        match key {
            Key::Service { network, name } => Some((network.clone(), name.clone())),
            _ => None,
        }
    }
}

impl Indexed for Health {
    type Id = (String, String);
    fn id(&self) -> (String, String) {
        (self.network.clone(), self.endpoint.clone())
    }
    fn id_of(key: &Key) -> Option<(String, String)> {
        match key {
            Key::Health { network, id } => Some((network.clone(), id.clone())),
            _ => None,
        }
    }
}

impl Indexed for CoordinatorRecord {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Coordinator(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for Policy {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Policy(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for TunnelStatus {
    type Id = String;
    fn id(&self) -> String {
        self.node.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Tunnel(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for Rotation {
    type Id = String;
    fn id(&self) -> String {
        self.node.clone()
    }
    fn id_of(key: &Key) -> Option<String> {
        match key {
            Key::Rotation(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Indexed for NetworkProblem {
    type Id = (String, String);
    fn id(&self) -> (String, String) {
        (self.network.clone(), self.node.clone())
    }
    fn id_of(key: &Key) -> Option<(String, String)> {
        match key {
            Key::Problem { network, node } => Some((network.clone(), node.clone())),
            _ => None,
        }
    }
}

/// Declares the tracked kinds, in dependency order (a kind may refer to the kinds before it):
/// additions are announced in this order, removals in the reverse one.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty => $variant:ident, )*) => {
        /// A typed change of the cluster state, in the order consumers should apply it.
        // The endpoint variant is the largest and also by far the most frequent one: boxing it
        // would allocate once more for nearly every change, to shrink the rare ones.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum StateChange {
            $( $(#[$doc])* $variant(Change<$ty>), )*
        }

        /// The typed cluster state, as of `revision`.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct ClusterState {
            $( $field: OrdMap<<$ty as Indexed>::Id, $ty>, )*
            revision: i64,
        }

        impl ClusterState {
            $( $(#[$doc])* pub fn $field(&self) -> &OrdMap<<$ty as Indexed>::Id, $ty> {
                &self.$field
            } )*

            /// Stores the value of `kv` if its key is of a tracked kind; an unusable value
            /// removes what was there.
            fn put_kv(&mut self, key: &Key, kv: &KeyValue) -> Option<StateChange> {
                $( if let Some(id) = <$ty as Indexed>::id_of(key) {
                    return match decode::<$ty>(&kv.key, &kv.value) {
                        Ok(v) => upsert(&mut self.$field, id, v).map(StateChange::$variant),
                        Err(reason) => {
                            warn!(key = %kv.key, revision = kv.mod_revision, %reason, "skipping stored value");
                            count_skipped(stringify!($field));
                            self.$field.remove(&id).map(|v| StateChange::$variant(Change::Removed(v)))
                        }
                    };
                } )*
                None
            }

            /// Forgets the object at `key`.
            fn remove_key(&mut self, key: &Key) -> Option<StateChange> {
                $( if let Some(id) = <$ty as Indexed>::id_of(key) {
                    return self.$field.remove(&id).map(|v| StateChange::$variant(Change::Removed(v)));
                } )*
                None
            }

            /// What turns `self` into `next`: removals in reverse kind order, then additions and
            /// updates in kind order.
            fn diff(&self, next: &ClusterState) -> Vec<StateChange> {
                let mut removals: Vec<Vec<StateChange>> = Vec::new();
                let mut out = Vec::new();
                $(
                    removals.push(
                        self.$field
                            .iter()
                            .filter(|(k, _)| !next.$field.contains_key(*k))
                            .map(|(_, v)| StateChange::$variant(Change::Removed(v.clone())))
                            .collect(),
                    );
                    for (k, v) in &next.$field {
                        let change = match self.$field.get(k) {
                            None => Change::Added(v.clone()),
                            Some(old) if old != v => Change::Updated { old: old.clone(), new: v.clone() },
                            Some(_) => continue,
                        };
                        out.push(StateChange::$variant(change));
                    }
                )*
                removals.into_iter().rev().flatten().chain(out).collect()
            }
        }
    };
}

kinds! {
    /// Networks by name.
    networks: Network => Network,
    /// Registered (live) nodes by name.
    nodes: Node => Node,
    /// IPAM blocks by (network, block).
    blocks: IpamBlock => Block,
    /// Endpoints by (network, endpoint id).
    endpoints: Endpoint => Endpoint,
    /// Network links by (a, b), a < b.
    links: Link => Link,
    /// Problems nodes report, by (network, node).
    problems: NetworkProblem => Problem,
    /// Services by (network, name).
    services: Service => Service,
    /// Health of service instances by (network, endpoint id).
    health: Health => Health,
    /// Live coordinators by name.
    coordinators: CoordinatorRecord => Coordinator,
    /// Network policies by name.
    policies: Policy => Policy,
    /// How each node's WireGuard tunnels stand, by node.
    tunnels: TunnelStatus => Tunnel,
    /// Key rotations requested, by node.
    rotations: Rotation => Rotation,
}

fn upsert<K: Ord + Clone, V: PartialEq + Clone>(
    map: &mut OrdMap<K, V>,
    id: K,
    v: V,
) -> Option<Change<V>> {
    match map.insert(id, v.clone()) {
        None => Some(Change::Added(v)),
        Some(old) if old != v => Some(Change::Updated { old, new: v }),
        Some(_) => None,
    }
}

impl StateChange {
    /// The trace context of the write that made this change (none for removals and for kinds
    /// that carry none).
    pub fn trace(&self) -> Trace {
        match self {
            StateChange::Network(c) => c.after().map_or(Trace::NONE, Object::trace),
            StateChange::Endpoint(c) => c.after().map_or(Trace::NONE, Object::trace),
            StateChange::Service(c) => c.after().map_or(Trace::NONE, Object::trace),
            StateChange::Policy(c) => c.after().map_or(Trace::NONE, Object::trace),
            StateChange::Rotation(c) => c.after().map_or(Trace::NONE, Object::trace),
            _ => Trace::NONE,
        }
    }

    /// Can this change move what the DNS projection holds? Networks, endpoints, links, services
    /// and health can; nodes, address blocks, problem reports, policies, coordinators (the
    /// authority, which a server compares whole), tunnels and key rotations cannot.
    pub fn projects_to_dns(&self) -> bool {
        match self {
            StateChange::Network(_)
            | StateChange::Endpoint(_)
            | StateChange::Link(_)
            | StateChange::Service(_)
            | StateChange::Health(_) => true,
            StateChange::Node(_)
            | StateChange::Block(_)
            | StateChange::Problem(_)
            | StateChange::Policy(_)
            | StateChange::Coordinator(_)
            | StateChange::Tunnel(_)
            | StateChange::Rotation(_) => false,
        }
    }

    /// Is this a change of endpoints on node `node` only, before and after (its own records
    /// coming back from etcd, say)?
    pub fn is_endpoint_of(&self, node: &str) -> bool {
        matches!(self, StateChange::Endpoint(c) if c.values().all(|e| e.node == node))
    }

    /// The networks whose objects this change concerns (a network itself, an endpoint's or a
    /// block's network, both ends of a link); empty for nodes.
    pub fn networks(&self) -> Vec<&str> {
        match self {
            StateChange::Network(c) => c.values().map(|n| n.name.as_str()).collect(),
            StateChange::Node(_) => Vec::new(),
            StateChange::Block(c) => c.values().map(|b| b.network.as_str()).collect(),
            StateChange::Endpoint(c) => c.values().map(|e| e.network.as_str()).collect(),
            StateChange::Link(c) => c
                .values()
                .flat_map(|l| [l.a.as_str(), l.b.as_str()])
                .collect(),
            StateChange::Problem(c) => c.values().map(|p| p.network.as_str()).collect(),
            StateChange::Service(c) => c.values().map(|s| s.network.as_str()).collect(),
            StateChange::Health(c) => c.values().map(|h| h.network.as_str()).collect(),
            StateChange::Coordinator(_) | StateChange::Tunnel(_) | StateChange::Rotation(_) => {
                Vec::new()
            }
            StateChange::Policy(c) => c.values().map(|p| p.network.as_str()).collect(),
        }
    }
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
            match Key::parse(&kv.key) {
                Some(key) => {
                    state.put_kv(&key, kv);
                }
                None => debug!(key = %kv.key, "ignoring key outside the v1 schema"),
            }
        }
        state
    }

    /// Store revision this state reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The endpoint `id` of `network`, if any.
    pub fn endpoint(&self, network: &str, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(&(network.to_string(), id.to_string()))
    }

    /// Endpoints of one network.
    pub fn endpoints_of<'a>(&'a self, network: &str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        let network = network.to_string();
        self.endpoints
            .range((network.clone(), String::new())..)
            .take_while(move |((n, _), _)| *n == network)
            .map(|(_, e)| e)
    }

    /// The services defined on `network`, in name order.
    pub fn services_of<'a>(&'a self, network: &str) -> impl Iterator<Item = &'a Service> + 'a {
        let network = network.to_string();
        self.services
            .range((network.clone(), String::new())..)
            .take_while(move |((n, _), _)| *n == network)
            .map(|(_, s)| s)
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
            WatchEvent::Put(kv) => {
                let Some(key) = Key::parse(&kv.key) else {
                    debug!(key = %kv.key, "ignoring key outside the v1 schema");
                    return None;
                };
                self.put_kv(&key, kv)
            }
            WatchEvent::Delete { key, .. } => self.remove_key(&Key::parse(key)?),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_fuzz_tests.rs"]
mod fuzz_tests;
