//! Fixtures shared by the agent's unit tests: cluster states, workloads, a recording publisher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use shibafu_overlay::model::{Endpoint, Network, NetworkProblem, Node, Object, SCHEMA_VERSION};
use shibafu_overlay::state::{ClusterState, StateChange};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{ClusterChange, KeyValue, StoreError, WatchEvent};

use crate::publish::Publisher;
use crate::registry::book::{Entry, Iface};

/// A network with the defaults of `network create`.
pub fn network(name: &str, subnet: &str, vni: u32) -> Network {
    Network::new(name, subnet.parse().expect("subnet"), vni)
}

/// An endpoint of `name` on `network`, hosted by `node`.
pub fn endpoint(network: &str, name: &str, node: &str, ip: &str) -> Endpoint {
    Endpoint::new(network, name, node, ip.parse().expect("ip"))
}

/// A cluster of `nets` and `endpoints`, with a node record (10.0.0.N) for every endpoint's node.
pub fn state_with(nets: &[Network], endpoints: &[Endpoint]) -> Arc<ClusterState> {
    let mut kvs = Vec::new();
    let mut push = |key: Key, value: Vec<u8>| {
        let rev = kvs.len() as i64 + 2;
        kvs.push(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        });
    };
    for n in nets {
        push(n.key(), serde_json::to_vec(n).expect("json"));
    }
    let nodes: BTreeSet<&str> = endpoints.iter().map(|e| e.node.as_str()).collect();
    for name in nodes {
        let number: u8 = name.trim_start_matches("node").parse().unwrap_or(9);
        let n = Node {
            schema: SCHEMA_VERSION,
            name: name.to_string(),
            underlay: format!("10.0.0.{number}").parse().expect("ip"),
            version: "test".into(),
            wg: None,
            started_at: 0,
        };
        push(n.key(), serde_json::to_vec(&n).expect("json"));
    }
    for e in endpoints {
        push(e.key(), serde_json::to_vec(e).expect("json"));
    }
    let mut st = ClusterState::new();
    let revision = kvs.len() as i64 + 1;
    st.apply(&ClusterChange::Snapshot { kvs, revision });
    Arc::new(st)
}

/// `state` with `problem` reported too.
pub fn with_problem(state: &ClusterState, problem: &NetworkProblem) -> Arc<ClusterState> {
    with_object(state, problem)
}

/// `state` with `obj` stored too (as the watch would bring it).
pub fn with_object(state: &ClusterState, obj: &impl Object) -> Arc<ClusterState> {
    stored(state, obj).0
}

/// `state` with `obj` stored too, and the changes that made.
pub fn stored(state: &ClusterState, obj: &impl Object) -> (Arc<ClusterState>, Vec<StateChange>) {
    let mut st = state.clone();
    let rev = st.revision() + 1;
    let changes = st.apply(&ClusterChange::Events(vec![WatchEvent::Put(KeyValue {
        key: obj.key().to_string(),
        value: serde_json::to_vec(obj).expect("json"),
        create_revision: rev,
        mod_revision: rev,
        lease: 0,
    })]));
    (Arc::new(st), changes)
}

/// `state` without the object at `obj`'s key (as the watch brings a deletion).
pub fn without_object(state: &ClusterState, obj: &impl Object) -> Arc<ClusterState> {
    let mut st = state.clone();
    let rev = st.revision() + 1;
    st.apply(&ClusterChange::Events(vec![WatchEvent::Delete {
        key: obj.key().to_string(),
        mod_revision: rev,
    }]));
    Arc::new(st)
}

/// A workload `name` in `/run/test/<name>` with one interface per endpoint, eth0 first.
pub fn workload(name: &str, endpoints: &[Endpoint]) -> Entry {
    Entry {
        name: name.into(),
        netns: PathBuf::from(format!("/run/test/{name}")),
        container: true,
        interfaces: endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| Iface {
                ifname: format!("eth{i}"),
                endpoint: e.clone(),
            })
            .collect(),
        cni: None,
    }
}

/// A temporary state directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag` and the process.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sf-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A [`Publisher`] that keeps what was published, in order.
#[derive(Default)]
pub struct FakePublisher {
    records: Mutex<BTreeMap<String, Vec<u8>>>,
    log: Mutex<Vec<String>>,
}

impl FakePublisher {
    /// Keys currently published.
    pub fn keys(&self) -> Vec<String> {
        self.records.lock().expect("lock").keys().cloned().collect()
    }

    /// The value published at `key`, if any.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.records.lock().expect("lock").get(key).cloned()
    }

    /// Every put and delete so far, as `put KEY` / `delete KEY`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Publisher for FakePublisher {
    async fn put(&self, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        self.log.lock().expect("lock").push(format!("put {key}"));
        self.records
            .lock()
            .expect("lock")
            .insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, key: Key) -> Result<(), StoreError> {
        self.log.lock().expect("lock").push(format!("delete {key}"));
        self.records.lock().expect("lock").remove(&key.to_string());
        Ok(())
    }
}

/// A small deterministic generator (xorshift), so a randomized test replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
