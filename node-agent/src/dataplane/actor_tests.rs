//! The dataplane owner with the firewall owner: what reaches the firewall, and when.

use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use shibafu_overlay::firewall::{FakeFirewall, Firewall, FirewallError};
use shibafu_overlay::netlink::FakeDataplane;
use shibafu_overlay::plan::{veth_host_name, Op};

use super::*;
use crate::dataplane::tests::{local, reconciler};
use crate::firewall_actor::FirewallActor;
use crate::testing::{endpoint, network, state_with, workload, FakePublisher};

/// A firewall that notes, for each spec applied, its ports and whether the kernel already had
/// their veths.
struct Witness {
    dp: Arc<FakeDataplane>,
    inner: FakeFirewall,
    /// (ports of the spec, ports whose veth had been created by then).
    seen: StdMutex<Vec<(Vec<String>, Vec<String>)>>,
}

#[async_trait]
impl Firewall for Witness {
    async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
        let created: Vec<String> = self
            .dp
            .ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::CreateVeth { host, .. } => Some(host),
                _ => None,
            })
            .collect();
        let ports = spec.ports.iter().map(|p| p.port.clone()).collect();
        self.seen.lock().expect("lock").push((ports, created));
        self.inner.apply(spec).await
    }

    async fn remove(&self) -> Result<(), FirewallError> {
        self.inner.remove().await
    }

    async fn ensure(&self) -> Result<bool, FirewallError> {
        self.inner.ensure().await
    }
}

#[actix::test]
async fn an_attach_has_its_port_guarded_before_the_kernel_creates_it() {
    let nets = [network("backend", "172.22.0.0/24", 4097)];
    let dp = Arc::new(FakeDataplane::new());
    let witness = Arc::new(Witness {
        dp: dp.clone(),
        inner: FakeFirewall::new(),
        seen: StdMutex::default(),
    });
    let firewall = FirewallActor::new(witness.clone()).start();
    let publish = PublishQueue::start(Arc::new(FakePublisher::default()));
    let actor = DataplaneActor::new(
        reconciler(&dp, 1500),
        "node1".into(),
        firewall.recipient(),
        publish,
    )
    .start();
    actor.do_send(ClusterChanged {
        changes: vec![],
        state: state_with(&nets, &[]),
    });
    // Two attaches: the first builds the network (a whole plan), the second is spliced.
    let mut on = Vec::new();
    for (name, ip) in [("api", "172.22.0.2"), ("web", "172.22.0.3")] {
        let netns = PathBuf::from(format!("/run/test/{name}"));
        dp.add_container(&netns);
        on.push(workload(name, &[endpoint("backend", name, "node1", ip)]));
        let apply = ApplyLocal {
            local: local(&on),
            netns,
            attach: true,
            trace: Trace::default(),
        };
        let mut done = actor.send(apply).await.expect("mailbox");
        // The first attach may come before the owner read the cluster: it is then refused.
        for _ in 0..100 {
            if !matches!(done, Err(DataplaneError::NotReady)) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            let again = ApplyLocal {
                local: local(&on),
                netns: PathBuf::from(format!("/run/test/{name}")),
                attach: true,
                trace: Trace::default(),
            };
            done = actor.send(again).await.expect("mailbox");
        }
        done.expect("attach");
        let port = veth_host_name("backend", name);
        let seen = witness.seen.lock().expect("lock").clone();
        let first = seen.iter().find(|(ports, _)| ports.contains(&port));
        let (_, created) = first.expect("the port reached the firewall");
        assert!(
            !created.contains(&port),
            "{name}'s port was guarded only after its veth was created"
        );
        assert!(dp.ops().iter().any(
            |op| matches!(op, Op::CreateVeth { host, .. } if *host == port)
        ));
    }
}
