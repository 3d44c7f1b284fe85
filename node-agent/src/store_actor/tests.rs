//! StoreActor against the in-memory store: registration, lease loss, store outages, fan-out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::FutureExt;
use shibafu_overlay::model::{Network, Node, SCHEMA_VERSION};
use shibafu_overlay::state::{Change, StateChange};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{MemoryStore, Store, StoreError};

use super::*;
use crate::messages::{
    ClusterChanged, DeleteOwned, Deregister, GetNetworks, GetStatus, PutOwned, Subscribe,
};

#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<ClusterChanged>>>);

impl Seen {
    fn network_added(&self, name: &str) -> bool {
        self.0.lock().expect("lock").iter().any(|m| {
            m.changes
                .iter()
                .any(|c| matches!(c, StateChange::Network(Change::Added(n)) if n.name == name))
        })
    }
}

struct Collector(Seen);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<ClusterChanged> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ClusterChanged, _: &mut Context<Self>) {
        self.0 .0.lock().expect("lock").push(msg);
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        node: Node {
            schema: SCHEMA_VERSION,
            name: "n1".into(),
            underlay: "10.0.0.11".parse().expect("ip"),
            version: "test".into(),
            wg: None,
            started_at: 1,
        },
        lease_ttl: Duration::from_secs(1),
        upstream_dns: vec![],
    }
}

/// Connects to `mem`, failing the first `failures` attempts.
fn connector(mem: Arc<MemoryStore>, failures: usize) -> Connector {
    let attempts = Arc::new(AtomicUsize::new(0));
    Arc::new(move || {
        let mem = mem.clone();
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < failures {
                return Err(StoreError::Unavailable("refused".into()));
            }
            Ok(mem as Arc<dyn Store>)
        }
        .boxed()
    })
}

fn network(name: &str, subnet: &str) -> Vec<u8> {
    serde_json::to_vec(&Network::new(name, subnet.parse().expect("subnet"), 4096)).expect("json")
}

async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node_lease(mem: &MemoryStore) -> Option<i64> {
    let kv = mem.get(&Key::Node("n1".into()).to_string()).await.ok()??;
    (kv.lease != 0).then_some(kv.lease)
}

#[test]
fn registers_the_node_and_publishes_typed_changes() {
    actix::System::new().block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let actor = StoreActor::new(config(), connector(mem.clone(), 0)).start();
        let early = Seen::default();
        actor.do_send(Subscribe(Collector(early.clone()).start().recipient()));
        eventually("node registered", async || node_lease(&mem).await.is_some()).await;

        let key = Key::Network("frontend".into()).to_string();
        mem.put(&key, network("frontend", "172.21.0.0/24"), None)
            .await
            .expect("put");
        eventually("subscriber sees the network", async || {
            early.network_added("frontend")
        })
        .await;

        let late = Seen::default();
        actor.do_send(Subscribe(Collector(late.clone()).start().recipient()));
        eventually("late subscriber gets the state", async || {
            late.0
                .lock()
                .expect("lock")
                .iter()
                .any(|m| m.changes.is_empty() && m.state.networks().contains_key("frontend"))
        })
        .await;

        let st = actor.send(GetStatus).await.expect("status");
        assert!(st.etcd_connected && st.registered);
        assert_eq!(st.networks, ["frontend"]);
        assert_eq!(st.nodes, ["n1"]);
        let nets = actor.send(GetNetworks).await.expect("networks");
        assert_eq!(nets[0].subnet.to_string(), "172.21.0.0/24");
    });
}

#[test]
fn re_registers_the_node_and_its_keys_after_losing_the_lease() {
    actix::System::new().block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let actor = StoreActor::new(config(), connector(mem.clone(), 0)).start();
        eventually("node registered", async || node_lease(&mem).await.is_some()).await;
        let ep = Key::Endpoint {
            network: "frontend".into(),
            id: "n1-web".into(),
        };
        let put = PutOwned {
            key: ep.clone(),
            value: b"{}".to_vec(),
        };
        actor.send(put).await.expect("mailbox").expect("put owned");
        let first = node_lease(&mem).await.expect("lease");

        assert!(mem.expire_lease(first));
        eventually("node back under a new lease", async || {
            node_lease(&mem).await.is_some_and(|l| l != first)
        })
        .await;
        let second = node_lease(&mem).await.expect("lease");
        eventually("owned key written again", async || {
            mem.get(&ep.to_string())
                .await
                .ok()
                .flatten()
                .is_some_and(|kv| kv.lease == second)
        })
        .await;

        actor
            .send(DeleteOwned { key: ep.clone() })
            .await
            .expect("mailbox")
            .expect("delete");
        assert!(mem.get(&ep.to_string()).await.expect("get").is_none());
        assert!(mem.expire_lease(second));
        eventually("node back once more", async || {
            node_lease(&mem).await.is_some()
        })
        .await;
        assert!(
            mem.get(&ep.to_string()).await.expect("get").is_none(),
            "a deleted owned key is not written again"
        );
    });
}

#[test]
fn writes_what_changed_during_an_outage_under_the_lease_it_holds() {
    actix::System::new().block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let actor = StoreActor::new(config(), connector(mem.clone(), 0)).start();
        eventually("node registered", async || node_lease(&mem).await.is_some()).await;
        let lease = node_lease(&mem).await.expect("lease");
        let key = |id: &str| Key::Endpoint {
            network: "frontend".into(),
            id: id.into(),
        };
        let put = |id: &str| PutOwned {
            key: key(id),
            value: b"{}".to_vec(),
        };
        let held = async |id: &str| {
            mem.get(&key(id).to_string())
                .await
                .ok()
                .flatten()
                .map(|kv| kv.lease)
        };
        actor.send(put("old")).await.expect("mailbox").expect("put");

        mem.set_available(false);
        let during = actor.send(put("new")).await.expect("mailbox");
        assert!(during.is_err(), "etcd is away");
        let gone = actor.send(DeleteOwned { key: key("old") }).await;
        assert!(gone.expect("mailbox").is_err(), "etcd is away");
        mem.set_available(true);

        eventually("the new key written under the same lease", async || {
            held("new").await == Some(lease)
        })
        .await;
        eventually("the old key deleted", async || held("old").await.is_none()).await;
        assert_eq!(
            node_lease(&mem).await,
            Some(lease),
            "the node kept its lease: it was never without one"
        );
    });
}

#[test]
fn keeps_its_state_while_the_store_is_down_and_catches_up() {
    actix::System::new().block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let actor = StoreActor::new(config(), connector(mem.clone(), 0)).start();
        let key_a = Key::Network("a".into()).to_string();
        mem.put(&key_a, network("a", "172.21.0.0/24"), None)
            .await
            .expect("put");
        eventually("sees a", async || {
            actor
                .send(GetStatus)
                .await
                .is_ok_and(|s| s.networks == ["a"] && s.etcd_connected)
        })
        .await;

        mem.set_available(false);
        eventually("notices the outage", async || {
            actor.send(GetStatus).await.is_ok_and(|s| !s.etcd_connected)
        })
        .await;
        let st = actor.send(GetStatus).await.expect("status");
        assert_eq!(st.networks, ["a"], "the last state is kept");

        mem.set_available(true);
        let key_b = Key::Network("b".into()).to_string();
        mem.put(&key_b, network("b", "172.22.0.0/24"), None)
            .await
            .expect("put");
        eventually("catches up", async || {
            actor
                .send(GetStatus)
                .await
                .is_ok_and(|s| s.etcd_connected && s.networks == ["a", "b"])
        })
        .await;
    });
}

#[test]
fn retries_until_the_store_answers_then_deregisters_on_request() {
    actix::System::new().block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let actor = StoreActor::new(config(), connector(mem.clone(), 3)).start();
        let st = actor.send(GetStatus).await.expect("status");
        assert!(!st.etcd_connected && !st.registered);
        eventually("registered after retries", async || {
            node_lease(&mem).await.is_some()
        })
        .await;

        actor
            .send(Deregister)
            .await
            .expect("mailbox")
            .expect("revoke");
        assert!(node_lease(&mem).await.is_none());
        actix_rt::time::sleep(Duration::from_millis(800)).await;
        assert!(
            node_lease(&mem).await.is_none(),
            "no re-registration after deregister"
        );
    });
}
