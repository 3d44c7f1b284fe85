//! Host logic against fakes: memory store for IPAM, simulated kernel, recording firewall.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use shibafu_overlay::firewall::FakeFirewall;
use shibafu_overlay::ipam::Ipam;
use shibafu_overlay::model::{Endpoint, Network, SCHEMA_VERSION};
use shibafu_overlay::netlink::{FakeDataplane, Scope};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{ClusterChange, KeyValue, MemoryStore, Store, StoreError};

use super::book::Book;
use super::*;

#[derive(Default)]
struct FakePublisher {
    records: Mutex<BTreeMap<(String, String), Endpoint>>,
}

#[async_trait]
impl Publisher for FakePublisher {
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError> {
        let mut r = self.records.lock().expect("lock");
        r.insert((ep.network.clone(), ep.id.clone()), ep.clone());
        Ok(())
    }
    async fn delete(&self, network: &str, id: &str) -> Result<(), StoreError> {
        let mut r = self.records.lock().expect("lock");
        r.remove(&(network.to_string(), id.to_string()));
        Ok(())
    }
}

fn network(name: &str, subnet: &str, vni: u32) -> Network {
    Network::new(name, subnet.parse().expect("subnet"), vni)
}

fn state_with(nets: &[Network], remote: &[Endpoint]) -> Arc<ClusterState> {
    let mut kvs = Vec::new();
    let mut rev = 1;
    let mut push = |key: String, value: Vec<u8>| {
        rev += 1;
        kvs.push(KeyValue {
            key,
            value,
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        });
    };
    for n in nets {
        push(
            Key::Network(n.name.clone()).to_string(),
            serde_json::to_vec(n).expect("json"),
        );
    }
    for node in remote
        .iter()
        .map(|e| &e.node)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let n = shibafu_overlay::model::Node {
            schema: SCHEMA_VERSION,
            name: node.clone(),
            underlay: if node == "node1" {
                "10.0.0.1"
            } else {
                "10.0.0.2"
            }
            .parse()
            .expect("ip"),
            version: "test".into(),
            wg_pubkey: None,
            started_at: 0,
        };
        push(
            Key::Node(node.clone()).to_string(),
            serde_json::to_vec(&n).expect("json"),
        );
    }
    for e in remote {
        let k = Key::Endpoint {
            network: e.network.clone(),
            id: e.id.clone(),
        };
        push(k.to_string(), serde_json::to_vec(e).expect("json"));
    }
    let mut st = ClusterState::new();
    st.apply(&ClusterChange::Snapshot { kvs, revision: rev });
    Arc::new(st)
}

struct Fixture {
    host: Host,
    dp: Arc<FakeDataplane>,
    publisher: Arc<FakePublisher>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(tag: &str, state: Arc<ClusterState>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("sf-host-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let dp = Arc::new(FakeDataplane::new());
    let publisher = Arc::new(FakePublisher::default());
    let cfg = HostConfig {
        node: "node1".into(),
        underlay: Some("10.0.0.1".parse().expect("ip")),
        underlay_mtu: 1500,
        bridge_netfilter_off: false,
    };
    let mut host = Host::new(
        cfg,
        dp.clone(),
        Arc::new(FakeFirewall::new()),
        Ipam::new(store, "node1"),
        publisher.clone(),
        Book::load(&dir).expect("book"),
    );
    host.set_state(state);
    Fixture {
        host,
        dp,
        publisher,
        dir,
    }
}

fn req(name: &str, nets: &[&str]) -> AttachRequest {
    AttachRequest {
        name: name.into(),
        netns: PathBuf::from(format!("/run/test/{name}")),
        container: true,
        networks: nets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn attach_two_networks_gives_eth0_eth1_and_publishes() {
    rt().block_on(async {
        let st = state_with(
            &[
                network("backend", "172.22.0.0/24", 4097),
                network("frontend", "172.21.0.0/24", 4096),
            ],
            &[],
        );
        let mut f = fixture("two", st);
        f.dp.add_container("/run/test/api");
        let e = f
            .host
            .attach(req("api", &["backend", "frontend"]))
            .await
            .expect("attach");
        let names: Vec<_> = e
            .entry
            .interfaces
            .iter()
            .map(|i| (i.ifname.as_str(), i.endpoint.network.as_str()))
            .collect();
        assert_eq!(names, [("eth0", "backend"), ("eth1", "frontend")]);
        assert_eq!(
            e.entry.interfaces[0].endpoint.ipv4.to_string(),
            "172.22.0.2"
        );
        assert_eq!(
            e.entry.interfaces[0].endpoint.mac.to_string(),
            "02:42:ac:16:00:02"
        );
        // The records go to the store when the caller runs the publication.
        assert!(f.publisher.records.lock().expect("lock").is_empty());
        e.publish.await;
        assert_eq!(f.publisher.records.lock().expect("lock").len(), 2);
        // The plan is now satisfied: a full resync changes nothing.
        let before = f.dp.ops().len();
        f.host.reconcile(Scope::All).await.expect("resync");
        assert_eq!(f.dp.ops().len(), before, "resync re-applied ops");
        // Restart: the book on disk brings the same workload back.
        assert!(Book::load(&f.dir).expect("load").get("api").is_some());
    });
}

#[test]
fn bad_input_leaves_nothing() {
    rt().block_on(async {
        let remote = Endpoint::new("backend", "db", "node2", "172.22.0.66".parse().expect("ip"));
        let st = state_with(&[network("backend", "172.22.0.0/24", 4097)], &[remote]);
        let mut f = fixture("bad", st);
        f.dp.add_container("/run/test/db");
        assert!(matches!(
            f.host.attach(req("api", &["nope"])).await,
            Err(HostError::UnknownNetwork(_))
        ));
        assert!(matches!(
            f.host.attach(req("Bad_Name", &["backend"])).await,
            Err(HostError::Name(_))
        ));
        assert!(matches!(
            f.host.attach(req("db", &["backend"])).await,
            Err(HostError::NameTaken { .. })
        ));
        let mut outside = req("x", &["backend"]);
        outside.ip = Some("10.9.9.9".parse().expect("ip"));
        assert!(matches!(
            f.host.attach(outside).await,
            Err(HostError::Ipam { .. })
        ));
        assert_eq!(f.host.book().entries().count(), 0);
        assert!(f.publisher.records.lock().expect("lock").is_empty());
    });
}

#[test]
fn failed_dataplane_rolls_back_and_detach_releases() {
    rt().block_on(async {
        let st = state_with(&[network("backend", "172.22.0.0/24", 4097)], &[]);
        let mut f = fixture("fail", st);
        f.dp.add_container("/run/test/a");
        f.dp.fail_ops_matching("in /run/test/a ");
        assert!(matches!(
            f.host.attach(req("a", &["backend"])).await,
            Err(HostError::Apply(_))
        ));
        assert_eq!(f.host.book().entries().count(), 0);
        assert!(f.publisher.records.lock().expect("lock").is_empty());
        // The address the failed attach took was given back: the next attach gets it.
        f.dp.add_container("/run/test/b");
        let b = f
            .host
            .attach(req("b", &["backend"]))
            .await
            .expect("attach b");
        assert_eq!(
            b.entry.interfaces[0].endpoint.ipv4.to_string(),
            "172.22.0.2"
        );
        f.host.detach("b", None).await.expect("detach");
        assert_eq!(f.host.book().entries().count(), 0);
        assert!(f.publisher.records.lock().expect("lock").is_empty());
        assert!(
            f.dp.state()
                .links
                .iter()
                .all(|l| !l.name.starts_with("sfe")),
            "veth left behind"
        );
        f.dp.add_container("/run/test/c");
        let b = f
            .host
            .attach(req("c", &["backend"]))
            .await
            .expect("attach c");
        assert_eq!(
            b.entry.interfaces[0].endpoint.ipv4.to_string(),
            "172.22.0.2"
        );
    });
}

fn remote(name: &str, ip: &str) -> Endpoint {
    let ipv4: std::net::Ipv4Addr = ip.parse().expect("ip");
    Endpoint::new("backend", name, "node2", ipv4)
}

#[test]
fn own_endpoint_echo_does_not_touch_the_kernel() {
    rt().block_on(async {
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let mut f = fixture("echo", state_with(&nets, &[]));
        f.dp.add_container("/run/test/api");
        let api = f
            .host
            .attach(req("api", &["backend"]))
            .await
            .expect("attach");
        let seen = f.dp.observations().len();
        // The watch brings the node's own record back: same desired state, no observation.
        let own = api.entry.interfaces[0].endpoint.clone();
        f.host
            .set_state(state_with(&nets, std::slice::from_ref(&own)));
        f.host.reconcile_change().await.expect("echo");
        assert_eq!(f.dp.observations().len(), seen, "the echo read the kernel");
        // The next attach on the settled host plans only its own workload.
        f.dp.add_container("/run/test/web");
        let logged = f.dp.ops().len();
        f.host.attach(req("web", &["backend"])).await.expect("web");
        let web = Scope::Workloads(vec!["/run/test/web".into()]);
        assert_eq!(f.dp.observations().last(), Some(&web));
        let ops = f.dp.ops();
        assert!(ops.len() > logged, "nothing applied for web");
        let veth = shibafu_overlay::plan::veth_host_name("backend", "web");
        for op in &ops[logged..] {
            let t = op.to_string();
            assert!(t.contains("/run/test/web") || t.contains(&veth), "{t}");
        }
        f.host.reconcile(Scope::All).await.expect("resync");
        assert_eq!(
            f.dp.ops().len(),
            ops.len(),
            "the fast attach left work behind"
        );
        let seen = f.dp.observations().len();
        // A remote endpoint does change the dataplane: FDB and neighbour entries appear.
        let db = remote("db", "172.22.0.66");
        f.host
            .set_state(state_with(&nets, &[own.clone(), db.clone()]));
        f.host.reconcile_change().await.expect("remote");
        assert_eq!(f.dp.observations().len(), seen + 1);
        let st = f.dp.state();
        assert!(
            st.fdb.iter().any(|e| e.mac == db.mac),
            "no FDB entry for db"
        );
        assert!(st
            .neighbours
            .iter()
            .any(|n| n.ip == std::net::IpAddr::V4(db.ipv4)));
        // After a failed reconcile the next change reads the kernel again, even if unchanged.
        f.dp.fail_ops_matching("172.22.0.67");
        let bad = remote("cache", "172.22.0.67");
        f.host
            .set_state(state_with(&nets, &[own.clone(), db.clone(), bad.clone()]));
        assert!(f.host.reconcile_change().await.is_err());
        f.host.reconcile_change().await.expect_err("still failing");
        assert_eq!(f.dp.observations().len(), seen + 3);
    });
}

#[test]
fn a_drifted_host_is_repaired_when_the_workload_pass_fails() {
    rt().block_on(async {
        use shibafu_overlay::netlink::Dataplane;
        use shibafu_overlay::plan::Op;
        let nets = [network("backend", "172.22.0.0/24", 4097)];
        let mut f = fixture("drift", state_with(&nets, &[]));
        f.dp.add_container("/run/test/api");
        f.host.attach(req("api", &["backend"])).await.expect("api");
        // Someone deletes the bridge by hand between resyncs.
        let bridge = format!("sfbr{:x}", 4097);
        assert!(f.dp.apply(&[Op::DeleteLink(bridge.clone())]).await.is_ok());
        f.dp.add_container("/run/test/web");
        f.host.attach(req("web", &["backend"])).await.expect("web");
        let seen = f.dp.observations();
        let web = vec![PathBuf::from("/run/test/web")];
        assert_eq!(
            seen[seen.len() - 2..],
            [Scope::Workloads(web.clone()), Scope::Only(web)]
        );
        assert!(f.dp.state().link(&bridge).is_some(), "bridge not rebuilt");
    });
}
