//! The NetworkActor's broadcast of this node's workloads, over a host of fakes: the book at once
//! to a new subscriber, again after the first restore, attaches and detaches; detaches held until
//! the first restore.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shibafu_overlay::firewall::FakeFirewall;
use shibafu_overlay::ipam::Ipam;
use shibafu_overlay::model::Endpoint;
use shibafu_overlay::netlink::FakeDataplane;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{ClusterChange, KeyValue, MemoryStore, StoreError};

use super::*;
use crate::host::{HostConfig, Publisher};

struct NoPublisher;

#[async_trait]
impl Publisher for NoPublisher {
    async fn put(&self, _: &Endpoint) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Every message of type `M` it gets, in order.
struct Collector<M>(Arc<Mutex<Vec<M>>>);

impl<M: Unpin + 'static> Actor for Collector<M> {
    type Context = Context<Self>;
}

impl Handler<LocalChanged> for Collector<LocalChanged> {
    type Result = ();
    fn handle(&mut self, msg: LocalChanged, _: &mut Context<Self>) {
        self.0.lock().expect("lock").push(msg);
    }
}

impl Handler<LocalEndpoints> for Collector<LocalEndpoints> {
    type Result = ();
    fn handle(&mut self, msg: LocalEndpoints, _: &mut Context<Self>) {
        self.0.lock().expect("lock").push(msg);
    }
}

fn cluster_with_backend() -> Arc<ClusterState> {
    let net = Network::new("backend", "172.22.0.0/24".parse().expect("subnet"), 4097);
    let kvs = vec![KeyValue {
        key: Key::Network(net.name.clone()).to_string(),
        value: serde_json::to_vec(&net).expect("json"),
        create_revision: 2,
        mod_revision: 2,
        lease: 0,
    }];
    let mut st = ClusterState::new();
    st.apply(&ClusterChange::Snapshot { kvs, revision: 2 });
    Arc::new(st)
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn subscribers_get_the_book_at_once_and_after_every_change() {
    let dir = std::env::temp_dir().join(format!("sf-netactor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    System::new().block_on(async {
        let dp = Arc::new(FakeDataplane::new());
        dp.add_container("/run/test/web");
        let host = Host::new(
            HostConfig {
                node: "node1".into(),
                underlay: Some("10.0.0.1".parse().expect("ip")),
                underlay_mtu: 1500,
                bridge_netfilter_off: false,
            },
            dp,
            Arc::new(FakeFirewall::new()),
            Ipam::new(Arc::new(MemoryStore::new()), "node1"),
            Arc::new(NoPublisher),
            Book::load(&dir).expect("book"),
        );
        let dns = Collector::<LocalEndpoints>(Arc::default()).start();
        let net = NetworkActor::new(host, dns.recipient()).start();
        let seen: Arc<Mutex<Vec<LocalChanged>>> = Arc::default();
        net.do_send(SubscribeLocal(Collector(seen.clone()).start().recipient()));
        let count = || seen.lock().expect("lock").len();
        let last = || seen.lock().expect("lock").last().map(|m| m.0.clone());
        eventually("the book at once", || count() == 1).await;

        // Before the first cluster state a detach waits: reconciling now would empty the host.
        let early = actix_rt::spawn(net.send(DetachWorkload {
            name: "ghost".into(),
            network: None,
        }));
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !early.is_finished(),
            "a detach ran before the first restore"
        );
        net.do_send(ClusterChanged {
            changes: vec![],
            state: cluster_with_backend(),
        });
        let early = early.await.expect("join").expect("mailbox");
        assert!(matches!(early, Err(HostError::UnknownWorkload(_))));
        eventually("the book after the restore", || count() >= 2).await;

        let req = AttachRequest {
            name: "web".into(),
            netns: "/run/test/web".into(),
            container: true,
            networks: vec!["backend".into()],
            ..AttachRequest::default()
        };
        net.send(AttachWorkload(req))
            .await
            .expect("mailbox")
            .expect("attach");
        eventually("the attach is broadcast", || {
            last().is_some_and(|w| w.contains_key("web"))
        })
        .await;
        net.send(DetachWorkload {
            name: "web".into(),
            network: None,
        })
        .await
        .expect("mailbox")
        .expect("detach");
        eventually("the detach is broadcast", || {
            last().is_some_and(|w| w.is_empty())
        })
        .await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
