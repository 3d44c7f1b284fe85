//! Attach and detach through the real owners (registry, dataplane, firewall actors) over the
//! simulated kernel, the recording firewall, an in-memory store for IPAM and a recording
//! publisher.

use std::sync::{Arc, Mutex};

use shibafu_overlay::firewall::FakeFirewall;
use shibafu_overlay::ipam::Ipam;
use shibafu_overlay::netlink::FakeDataplane;
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::MemoryStore;

use super::*;
use crate::dataplane::actor::DataplaneActor;
use crate::dataplane::{HostConfig, Reconciler};
use crate::firewall_actor::FirewallActor;
use crate::messages::{LocalChanged, SubscribeLocal};
use crate::publish::PublishQueue;
use crate::registry::actor::{GetWorkloads, RegistryActor};
use crate::registry::{LocalWorkloads, Registry};
use shibafu_overlay::model::{NetworkProblem, Object, Probe, Service, SCHEMA_VERSION};
use shibafu_overlay::store::StoreExt;

use crate::testing::{endpoint, network, state_with, with_problem, FakePublisher, TempDir};

/// Keeps every announcement of the registry.
#[derive(Clone, Default)]
struct Announced(Arc<Mutex<Vec<Arc<LocalWorkloads>>>>);

impl Actor for Announced {
    type Context = Context<Self>;
}

impl Handler<LocalChanged> for Announced {
    type Result = ();
    fn handle(&mut self, msg: LocalChanged, _: &mut Context<Self>) {
        self.0.lock().expect("lock").push(msg.0);
    }
}

struct Agent {
    net: Addr<NetworkActor>,
    store: Arc<MemoryStore>,
    registry: Addr<RegistryActor>,
    dataplane: Addr<DataplaneActor>,
    dp: Arc<FakeDataplane>,
    fw: Arc<FakeFirewall>,
    publisher: Arc<FakePublisher>,
    publish: PublishQueue,
    announced: Announced,
    dir: TempDir,
}

impl Agent {
    fn start(tag: &str, state: Arc<ClusterState>) -> Agent {
        let dir = TempDir::new(tag);
        let publisher = Arc::new(FakePublisher::default());
        let publish = PublishQueue::start(publisher.clone());
        let registry = Registry::load(&dir.0).expect("registry");
        let local = registry.effective();
        let registry = RegistryActor::new(registry, publish.clone()).start();
        let fw = Arc::new(FakeFirewall::new());
        let firewall = FirewallActor::new(fw.clone()).start();
        let dp = Arc::new(FakeDataplane::new());
        let cfg = HostConfig {
            node: "node1".into(),
            underlay: Some("10.0.0.1".parse().expect("ip")),
            underlay_mtu: 1500,
            bridge_netfilter_off: false,
            encrypt_all: false,
            tunnel_if: "wg-test".into(),
            control: vec![],
        };
        let rec = Reconciler::new(cfg, dp.clone(), local);
        let dataplane =
            DataplaneActor::new(rec, "node1".into(), firewall.recipient(), publish.clone()).start();
        let store = Arc::new(MemoryStore::new());
        let ipam = Ipam::new(store.clone(), "node1");
        let links = Links::new(
            "node1",
            ipam,
            store.clone(),
            &registry,
            dataplane.clone().recipient(),
        );
        let net = NetworkActor::new(links).start();
        let announced = Announced::default();
        registry.do_send(SubscribeLocal(announced.clone().start().recipient()));
        let changed = ClusterChanged {
            changes: vec![],
            state,
        };
        dataplane.do_send(changed.clone());
        net.do_send(changed);
        Agent {
            net,
            store,
            registry,
            dataplane,
            dp,
            fw,
            publisher,
            publish,
            announced,
            dir,
        }
    }

    async fn attach(&self, name: &str, nets: &[&str]) -> Result<Entry, AttachError> {
        self.dp.add_container(format!("/run/test/{name}"));
        let req = AttachRequest {
            name: name.into(),
            netns: format!("/run/test/{name}").into(),
            container: true,
            networks: nets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.net
            .send(AttachWorkload(req))
            .await
            .expect("mailbox")
            .map(|(e, _)| e)
    }

    async fn workloads(&self) -> Arc<LocalWorkloads> {
        self.registry.send(GetWorkloads).await.expect("mailbox")
    }

    async fn published(&self) -> Vec<String> {
        self.publish.flushed().await;
        self.publisher.keys()
    }
}

fn two_networks() -> Arc<ClusterState> {
    state_with(
        &[
            network("backend", "172.22.0.0/24", 4097),
            network("frontend", "172.21.0.0/24", 4096),
        ],
        &[],
    )
}

#[test]
fn an_attach_is_announced_and_published_once_the_kernel_is_done() {
    actix::System::new().block_on(async {
        let a = Agent::start("attach", two_networks());
        let e = a
            .attach("api", &["backend", "frontend"])
            .await
            .expect("attach");
        let names: Vec<_> = e
            .interfaces
            .iter()
            .map(|i| (i.ifname.as_str(), i.endpoint.network.as_str()))
            .collect();
        assert_eq!(names, [("eth0", "backend"), ("eth1", "frontend")]);
        assert_eq!(e.interfaces[0].endpoint.ipv4.to_string(), "172.22.0.2");
        assert_eq!(
            e.interfaces[0].endpoint.mac.to_string(),
            "02:42:ac:16:00:02"
        );
        let published = a.published().await;
        assert_eq!(
            published,
            [
                "/shibafu/v1/endpoints/backend/api",
                "/shibafu/v1/endpoints/frontend/api"
            ]
        );
        let seen = a.announced.0.lock().expect("lock").clone();
        assert!(
            seen.first().is_some_and(|w| w.is_empty()),
            "the first announcement is the book"
        );
        assert!(seen.last().is_some_and(|w| w.contains_key("api")));
        assert!(
            seen.iter().all(|w| w.is_empty() || w["api"] == e),
            "a staged workload was announced"
        );
        // The book on disk brings the same workload back after a restart.
        let again = Registry::load(&a.dir.0).expect("reload");
        assert_eq!(again.get("api"), Some(&e));
        // The firewall owner got the networks from the dataplane owner.
        let fw = a.fw.current().expect("firewall applied");
        assert_eq!(fw.networks.len(), 2);
    });
}

#[test]
fn bad_input_leaves_nothing() {
    actix::System::new().block_on(async {
        let remote = endpoint("backend", "db", "node2", "172.22.0.66");
        let st = state_with(&[network("backend", "172.22.0.0/24", 4097)], &[remote]);
        let a = Agent::start("bad", st.clone());
        assert!(matches!(
            a.attach("api", &["nope"]).await,
            Err(AttachError::UnknownNetwork(_))
        ));
        assert!(matches!(
            a.attach("Bad_Name", &["backend"]).await,
            Err(AttachError::Name(_))
        ));
        assert!(matches!(
            a.attach("db", &["backend"]).await,
            Err(AttachError::NameTaken { .. })
        ));
        assert!(matches!(
            a.attach("x", &["backend", "backend"]).await,
            Err(AttachError::AlreadyAttached { .. })
        ));
        let outside = AttachRequest {
            name: "x".into(),
            netns: "/run/test/x".into(),
            networks: vec!["backend".into()],
            ip: Some("10.9.9.9".parse().expect("ip")),
            ..Default::default()
        };
        let res = a.net.send(AttachWorkload(outside)).await.expect("mailbox");
        assert!(matches!(res, Err(AttachError::Ipam { .. })), "{res:?}");
        let problem = NetworkProblem {
            schema: SCHEMA_VERSION,
            network: "backend".into(),
            node: "node1".into(),
            reason: "overlay MTU 1250 is below 1280".into(),
        };
        let skipped = with_problem(&st, &problem);
        a.net.do_send(ClusterChanged {
            changes: vec![],
            state: skipped,
        });
        let res = a.attach("y", &["backend"]).await;
        assert!(
            matches!(&res, Err(AttachError::NotBuiltHere { reason, .. }) if reason.contains("1280")),
            "{res:?}"
        );
        assert!(a.workloads().await.is_empty());
        assert!(a.published().await.is_empty());
    });
}

#[test]
fn a_failed_kernel_step_rolls_back_and_detach_gives_everything_back() {
    actix::System::new().block_on(async {
        let st = state_with(&[network("backend", "172.22.0.0/24", 4097)], &[]);
        let a = Agent::start("fail", st);
        a.dp.fail_ops_matching("in /run/test/a ");
        assert!(matches!(
            a.attach("a", &["backend"]).await,
            Err(AttachError::Dataplane(_))
        ));
        assert!(a.workloads().await.is_empty());
        assert!(a.published().await.is_empty());
        assert!(Registry::load(&a.dir.0)
            .expect("reload")
            .workloads()
            .is_empty());
        // The address the failed attach took was given back: the next attach gets it.
        let b = a.attach("b", &["backend"]).await.expect("attach b");
        assert_eq!(b.interfaces[0].endpoint.ipv4.to_string(), "172.22.0.2");
        let gone = a
            .net
            .send(DetachWorkload {
                name: "b".into(),
                network: None,
            })
            .await
            .expect("mailbox")
            .expect("detach");
        assert_eq!(gone, b);
        assert!(a.workloads().await.is_empty());
        assert!(a.published().await.is_empty());
        assert_eq!(
            a.publisher.log(),
            [
                "put /shibafu/v1/endpoints/backend/b",
                "delete /shibafu/v1/endpoints/backend/b"
            ]
        );
        assert!(
            a.dp.state()
                .links
                .iter()
                .all(|l| !l.name.starts_with("sfe")),
            "veth left behind"
        );
        let c = a.attach("c", &["backend"]).await.expect("attach c");
        assert_eq!(c.interfaces[0].endpoint.ipv4.to_string(), "172.22.0.2");
        let unknown = a
            .net
            .send(DetachWorkload {
                name: "nope".into(),
                network: None,
            })
            .await
            .expect("mailbox");
        assert!(matches!(unknown, Err(AttachError::UnknownWorkload(_))));
    });
}

#[test]
fn a_restarted_registry_adopts_the_workloads_and_publishes_them_again() {
    actix::System::new().block_on(async {
        let first = Agent::start("restart", two_networks());
        let api = first.attach("api", &["backend"]).await.expect("attach");
        let publisher = Arc::new(FakePublisher::default());
        let publish = PublishQueue::start(publisher.clone());
        let registry = Registry::load(&first.dir.0).expect("reload");
        assert_eq!(registry.get("api"), Some(&api));
        let again = RegistryActor::new(registry, publish.clone()).start();
        let adopted = again.send(GetWorkloads).await.expect("mailbox");
        assert_eq!(adopted.get("api"), Some(&api));
        publish.flushed().await;
        assert_eq!(publisher.keys(), ["/shibafu/v1/endpoints/backend/api"]);
    });
}

#[test]
fn before_the_first_cluster_state_a_detach_waits_and_an_attach_is_refused() {
    actix::System::new().block_on(async {
        let a = Agent::start("early", two_networks());
        a.attach("web", &["backend"]).await.expect("attach");
        // A second NetworkActor that has not seen the cluster yet, over the same owners.
        let ipam = Ipam::new(Arc::new(MemoryStore::new()), "node1");
        let store = Arc::new(MemoryStore::new());
        let links = Links::new(
            "node1",
            ipam,
            store,
            &a.registry,
            a.dataplane.clone().recipient(),
        );
        let early = NetworkActor::new(links).start();
        let req = AttachRequest {
            name: "x".into(),
            netns: "/run/test/x".into(),
            networks: vec!["backend".into()],
            ..Default::default()
        };
        let refused = early.send(AttachWorkload(req)).await.expect("mailbox");
        assert!(matches!(refused, Err(AttachError::Starting)), "{refused:?}");
        let detach = actix_rt::spawn(early.send(DetachWorkload {
            name: "web".into(),
            network: None,
        }));
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !detach.is_finished(),
            "a detach ran before the first cluster state"
        );
        assert!(a.workloads().await.contains_key("web"));
        early.do_send(ClusterChanged {
            changes: vec![],
            state: two_networks(),
        });
        detach
            .await
            .expect("join")
            .expect("mailbox")
            .expect("detach");
        assert!(a.workloads().await.is_empty());
    });
}

#[test]
fn an_instance_carries_its_weight_and_check_and_creates_its_service() {
    actix::System::new().block_on(async {
        let a = Agent::start("service", two_networks());
        let mut req = AttachRequest {
            name: "web1".into(),
            netns: "/run/test/web1".into(),
            container: true,
            networks: vec!["frontend".into()],
            service: Some("web".into()),
            port: Some(80),
            weight: Some(0),
            ..Default::default()
        };
        a.dp.add_container("/run/test/web1");
        let refused = a
            .net
            .send(AttachWorkload(req.clone()))
            .await
            .expect("mailbox");
        assert!(
            matches!(refused, Err(AttachError::Service(_))),
            "{refused:?}"
        );
        req.weight = Some(3);
        req.health.probe = Some(Probe::Tcp { port: 80 });
        let (entry, _) = a
            .net
            .send(AttachWorkload(req))
            .await
            .expect("mailbox")
            .expect("attach");
        let ep = &entry.interfaces[0].endpoint;
        assert_eq!(ep.weight, 3);
        assert_eq!(
            ep.health.as_ref().map(|h| h.probe.clone()),
            Some(Probe::Tcp { port: 80 })
        );
        let key = Service::new("frontend", "web").key();
        let mut created = None;
        for _ in 0..100 {
            created = a.store.get_object::<Service>(&key).await.expect("store");
            if created.is_some() {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (service, _) = created.expect("the service was created");
        assert_eq!(service.port, Some(80));
    });
}

#[path = "tests_cni.rs"]
mod cni;

#[path = "tests_catch_up.rs"]
mod catch_up;

#[path = "tests_recovery.rs"]
mod recovery;
