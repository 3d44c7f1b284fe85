//! The HealthActor over a fake prober, a fake runtime and a recording publisher, on paused
//! time: transitions after rise and fall, the start period, what is written and when, service
//! updates, and instances that go away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use shibafu_overlay::api::{ApiError, ContainerInfo};
use shibafu_overlay::health::{Clock, FakeProber, Verdict};
use shibafu_overlay::model::{
    Health, HealthCheck, HealthState, LbPolicy, Object, Probe, Service, SCHEMA_VERSION,
};
use shibafu_overlay::state::{Change, ClusterState, StateChange};
use shibafu_overlay::store::keys::Key;
use shibafu_overlay::store::{ClusterChange, KeyValue, StoreError, WatchEvent};

use super::{HealthActor, HealthLinks, RecordQueue};
use crate::messages::{ClusterChanged, LocalChanged};
use crate::publish::Publisher;
use crate::registry::book::Entry;
use crate::registry::LocalWorkloads;
use crate::runtime::Get;
use crate::testing::{endpoint, network, state_with, workload};

/// Every put (with its record) and delete, in order.
#[derive(Default)]
struct Records(Mutex<Vec<(String, Option<Health>)>>);

impl Records {
    fn all(&self) -> Vec<(String, Option<Health>)> {
        self.0.lock().expect("lock").clone()
    }

    /// The states written for `id`, in order.
    fn states(&self, id: &str) -> Vec<HealthState> {
        self.all()
            .into_iter()
            .filter_map(|(_, h)| h.filter(|h| h.endpoint == id).map(|h| h.state))
            .collect()
    }

    fn last(&self, id: &str) -> Option<Health> {
        self.all()
            .into_iter()
            .rev()
            .find_map(|(_, h)| h.filter(|h| h.endpoint == id))
    }
}

#[async_trait]
impl Publisher for Records {
    async fn put(&self, key: Key, value: Vec<u8>) -> Result<(), StoreError> {
        let h: Health = serde_json::from_slice(&value).expect("a health record");
        assert_eq!(h.key(), key);
        self.0
            .lock()
            .expect("lock")
            .push((format!("put {key}"), Some(h)));
        Ok(())
    }

    async fn delete(&self, key: Key) -> Result<(), StoreError> {
        self.0
            .lock()
            .expect("lock")
            .push((format!("delete {key}"), None));
        Ok(())
    }
}

/// The runtime: every container runs as PID 4242.
struct Runtime;

impl Actor for Runtime {
    type Context = Context<Self>;
}

impl Handler<Get> for Runtime {
    type Result = Result<ContainerInfo, ApiError>;

    fn handle(&mut self, msg: Get, _ctx: &mut Context<Self>) -> Self::Result {
        Ok(ContainerInfo {
            name: msg.0,
            state: "running".into(),
            pid: Some(4242),
            exit_code: None,
            command: vec![],
            netns: String::new(),
            interfaces: vec![],
            cni: None,
        })
    }
}

struct Rig {
    actor: Addr<HealthActor>,
    prober: Arc<FakeProber>,
    records: Arc<Records>,
    publish: RecordQueue,
}

impl Rig {
    /// The actor on paused time, told the cluster `state` and this node's `local` workloads.
    fn start(state: Arc<ClusterState>, local: &[Entry]) -> Rig {
        tokio::time::pause();
        let t0 = tokio::time::Instant::now();
        let clock: Clock = Arc::new(move || 1_000_000 + t0.elapsed().as_millis() as u64);
        let prober = Arc::new(FakeProber::new());
        let records = Arc::new(Records::default());
        let publish = RecordQueue::start(records.clone(), 4);
        let actor = HealthActor::new(HealthLinks {
            node: "node1".into(),
            prober: prober.clone(),
            publish: publish.clone(),
            pids: Runtime.start().recipient(),
            clock,
        })
        .start();
        let rig = Rig {
            actor,
            prober,
            records,
            publish,
        };
        rig.cluster(state, vec![]);
        rig.local(local);
        rig
    }

    fn cluster(&self, state: Arc<ClusterState>, changes: Vec<StateChange>) {
        self.actor.do_send(ClusterChanged { changes, state });
    }

    fn local(&self, entries: &[Entry]) {
        let all: LocalWorkloads = entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect();
        self.actor.do_send(LocalChanged(Arc::new(all)));
    }

    /// Waits (on paused time) until `name` was probed `n` times in all, then until the actor
    /// took the round and its writes are done.
    async fn probed(&self, name: &str, n: usize) {
        for _ in 0..100_000 {
            if self.prober.calls_of(name).len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            self.prober.calls_of(name).len() >= n,
            "{name} never probed {n} times"
        );
        self.settle().await;
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.publish.flushed().await;
    }
}

fn tcp_check(rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        rise,
        fall,
        ..HealthCheck::new(Probe::Tcp { port: 80 })
    }
}

fn web(check: Option<HealthCheck>) -> Service {
    Service {
        health: check,
        ..Service::new("front", "web")
    }
}

/// The cluster with network `front` and these records.
fn cluster<T: Object>(records: &[T]) -> Arc<ClusterState> {
    let mut st = (*state_with(&[network("front", "10.1.0.0/24", 4096)], &[])).clone();
    let events = records
        .iter()
        .map(|r| {
            WatchEvent::Put(KeyValue {
                key: r.key().to_string(),
                value: serde_json::to_vec(r).expect("json"),
                create_revision: 50,
                mod_revision: 50,
                lease: 0,
            })
        })
        .collect();
    st.apply(&ClusterChange::Events(events));
    Arc::new(st)
}

/// Workload `name` as an instance of service web.
fn instance(name: &str, ip: &str) -> Entry {
    let mut e = endpoint("front", name, "node1", ip);
    e.service = Some("web".into());
    workload(name, &[e])
}

#[test]
fn starting_then_healthy_after_rise_then_unhealthy_after_fall_written_only_on_change() {
    System::new().block_on(async {
        let rig = Rig::start(
            cluster(&[web(Some(tcp_check(2, 2)))]),
            &[instance("w1", "10.1.0.2")],
        );
        rig.probed("w1", 1).await;
        assert_eq!(
            rig.records.states("w1"),
            [HealthState::Starting],
            "the first round"
        );
        rig.probed("w1", 2).await;
        assert_eq!(
            rig.records.states("w1"),
            [HealthState::Starting, HealthState::Healthy]
        );
        let up = rig.records.last("w1").expect("record");
        assert_eq!((up.node.as_str(), up.since_ms), ("node1", up.checked_ms));
        rig.probed("w1", 10).await;
        assert_eq!(rig.records.all().len(), 2, "passing rounds write nothing");
        rig.prober
            .answer("w1", Verdict::fail("connect 10.1.0.2:80: refused"));
        rig.probed("w1", 11).await;
        assert_eq!(rig.records.all().len(), 2, "one failure is below fall");
        rig.probed("w1", 12).await;
        let down = rig.records.last("w1").expect("record");
        assert_eq!(down.state, HealthState::Unhealthy);
        assert_eq!(down.output, "connect 10.1.0.2:80: refused");
        assert!(down.since_ms > up.since_ms);
        rig.prober.answer("w1", Verdict::pass(""));
        rig.probed("w1", 14).await;
        assert_eq!(
            rig.records.states("w1"),
            [
                HealthState::Starting,
                HealthState::Healthy,
                HealthState::Unhealthy,
                HealthState::Healthy
            ]
        );
        let probe = &rig.prober.calls_of("w1")[0];
        assert_eq!(probe.target.addr.to_string(), "10.1.0.2");
        assert_eq!(probe.probe, Probe::Tcp { port: 80 });
    });
}

#[test]
fn failures_within_the_start_period_do_not_count() {
    System::new().block_on(async {
        let check = HealthCheck {
            start_period_ms: 10_000,
            ..tcp_check(1, 1)
        };
        let rig = Rig::start(cluster(&[web(Some(check))]), &[instance("w1", "10.1.0.2")]);
        rig.prober.answer("w1", Verdict::fail("refused"));
        // Rounds every second from an offset below one: the 9th is still within 10 s.
        rig.probed("w1", 9).await;
        assert_eq!(rig.records.states("w1"), [HealthState::Starting]);
        rig.probed("w1", 12).await;
        assert_eq!(
            rig.records.states("w1"),
            [HealthState::Starting, HealthState::Unhealthy]
        );
    });
}

#[test]
fn connection_counts_are_written_when_they_change_also_without_a_check() {
    System::new().block_on(async {
        let db = Service {
            lb: LbPolicy::LeastConnections,
            port: Some(5432),
            ..web(None)
        };
        let w1 = instance("w1", "10.1.0.2");
        let rig = Rig::start(cluster(&[db]), std::slice::from_ref(&w1));
        let counted = |n: usize| {
            let rig = &rig;
            let netns = w1.netns.clone();
            async move {
                for _ in 0..100_000 {
                    if rig.prober.counts().iter().filter(|p| **p == netns).count() >= n {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                rig.settle().await;
            }
        };
        counted(3).await;
        let first = rig.records.last("w1").expect("record");
        assert_eq!(
            (first.state, first.connections),
            (HealthState::Healthy, Some(0)),
            "no check: healthy while it runs"
        );
        assert_eq!(
            rig.records.all().len(),
            1,
            "an unchanged count is not written"
        );
        rig.prober.set_connections(&w1.netns, 3);
        counted(4).await;
        assert_eq!(rig.records.last("w1").and_then(|h| h.connections), Some(3));
        counted(8).await;
        assert_eq!(rig.records.all().len(), 2);
        assert!(rig.prober.calls().is_empty(), "counted, never probed");
    });
}

#[test]
fn a_service_update_changes_the_checks_of_running_instances() {
    System::new().block_on(async {
        let before = web(Some(tcp_check(2, 2)));
        let rig = Rig::start(
            cluster(std::slice::from_ref(&before)),
            &[instance("w1", "10.1.0.2")],
        );
        rig.probed("w1", 2).await;
        assert_eq!(
            rig.records.last("w1").map(|h| h.state),
            Some(HealthState::Healthy)
        );
        let after = web(Some(HealthCheck {
            interval_ms: 200,
            timeout_ms: 100,
            ..HealthCheck::new(Probe::Http {
                port: 8080,
                path: "/ready".into(),
            })
        }));
        let change = StateChange::Service(Change::Updated {
            old: before,
            new: after.clone(),
        });
        rig.cluster(cluster(&[after]), vec![change]);
        rig.settle().await;
        let seen = rig.prober.calls_of("w1").len();
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.settle().await;
        let calls = rig.prober.calls_of("w1");
        let new: Vec<_> = calls[seen..].iter().map(|c| c.probe.clone()).collect();
        assert!(
            (9..=11).contains(&new.len()),
            "{} rounds in 2 s at 200 ms",
            new.len()
        );
        assert!(new
            .iter()
            .all(|p| matches!(p, Probe::Http { port: 8080, .. })));
        assert_eq!(
            rig.records.states("w1"),
            [HealthState::Starting, HealthState::Healthy],
            "the instance stays healthy across the update"
        );
    });
}

#[test]
fn an_instance_that_goes_away_loses_its_schedule_and_its_record() {
    System::new().block_on(async {
        let rig = Rig::start(
            cluster(&[web(Some(tcp_check(1, 1)))]),
            &[instance("w1", "10.1.0.2"), instance("w2", "10.1.0.3")],
        );
        rig.probed("w1", 1).await;
        rig.probed("w2", 1).await;
        rig.local(&[instance("w2", "10.1.0.3")]);
        rig.settle().await;
        let key = "/shibafu/v1/health/front/w1";
        assert_eq!(
            rig.records.all().last().map(|(op, _)| op.clone()),
            Some(format!("delete {key}"))
        );
        let seen = rig.prober.calls_of("w1").len();
        rig.probed("w2", 5).await;
        assert_eq!(
            rig.prober.calls_of("w1").len(),
            seen,
            "w1 is no longer probed"
        );
        // A service without a check no longer watches its instances: w2's record goes too.
        rig.cluster(
            cluster(&[web(None)]),
            vec![StateChange::Service(Change::Added(web(None)))],
        );
        rig.settle().await;
        let deletes: Vec<String> = rig
            .records
            .all()
            .into_iter()
            .filter(|(op, _)| op.starts_with("delete"))
            .map(|(op, _)| op)
            .collect();
        assert_eq!(
            deletes,
            [
                format!("delete {key}"),
                "delete /shibafu/v1/health/front/w2".to_string()
            ]
        );
    });
}

#[test]
fn command_checks_enter_the_running_container_and_attachments_cannot_have_one() {
    System::new().block_on(async {
        let check = HealthCheck::new(Probe::Cmd {
            argv: vec!["pg_isready".into()],
        });
        let mut attached = instance("a1", "10.1.0.3");
        attached.container = false;
        let rig = Rig::start(
            cluster(&[web(Some(check))]),
            &[instance("c1", "10.1.0.2"), attached],
        );
        rig.probed("c1", 1).await;
        assert_eq!(rig.prober.calls_of("c1")[0].target.pid, Some(4242));
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rig.settle().await;
        assert!(rig.prober.calls_of("a1").is_empty(), "nothing to enter");
        let a1 = rig.records.last("a1").expect("a1 has a record");
        assert_eq!(a1.state, HealthState::Unhealthy, "it fails every round");
        assert!(a1.output.contains("not a container"), "{}", a1.output);
    });
}

#[test]
fn a_restarted_agent_resumes_from_the_state_it_had_written() {
    System::new().block_on(async {
        let before = Health {
            schema: SCHEMA_VERSION,
            network: "front".into(),
            endpoint: "w1".into(),
            node: "node1".into(),
            state: HealthState::Healthy,
            since_ms: 77,
            checked_ms: 78,
            output: String::new(),
            connections: None,
        };
        let mut st = (*cluster(&[web(Some(tcp_check(2, 2)))])).clone();
        let rev = st.revision() + 1;
        st.apply(&ClusterChange::Events(vec![WatchEvent::Put(KeyValue {
            key: before.key().to_string(),
            value: serde_json::to_vec(&before).expect("json"),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        })]));
        let rig = Rig::start(Arc::new(st), &[instance("w1", "10.1.0.2")]);
        rig.probed("w1", 1).await;
        let again = rig.records.last("w1").expect("written under the new lease");
        assert_eq!((again.state, again.since_ms), (HealthState::Healthy, 77));
    });
}
