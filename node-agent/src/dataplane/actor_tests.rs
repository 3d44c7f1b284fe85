//! The dataplane owner with the firewall owner: what reaches the firewall, and when.

use async_trait::async_trait;
use shibafu_overlay::firewall::{FakeFirewall, Firewall, FirewallError, FirewallSpec};
use shibafu_overlay::netlink::FakeDataplane;
use shibafu_overlay::plan::veth_host_name;

use super::*;
use crate::dataplane::tests::{local, reconciler};
use crate::firewall_actor::FirewallActor;
use crate::testing::{endpoint, network, state_with, workload, FakePublisher};

/// A firewall that takes its time over each apply, as nft may on a busy host.
struct Slow(FakeFirewall);

#[async_trait]
impl Firewall for Slow {
    async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        self.0.apply(spec).await
    }

    async fn remove(&self) -> Result<(), FirewallError> {
        self.0.remove().await
    }

    async fn ensure(&self) -> Result<bool, FirewallError> {
        self.0.ensure().await
    }
}

#[actix::test]
async fn an_attach_is_answered_once_its_port_is_in_the_source_guard() {
    let nets = [network("backend", "172.22.0.0/24", 4097)];
    let dp = Arc::new(FakeDataplane::new());
    let fw = Arc::new(Slow(FakeFirewall::new()));
    let firewall = FirewallActor::new(fw.clone()).start();
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
        dp.add_container(format!("/run/test/{name}"));
        on.push(workload(name, &[endpoint("backend", name, "node1", ip)]));
        let apply = || ApplyLocal {
            local: local(&on),
            netns: PathBuf::from(format!("/run/test/{name}")),
            attach: true,
            trace: Trace::default(),
        };
        let mut done = actor.send(apply()).await.expect("mailbox");
        // The first attach may come before the owner read the cluster: it is then refused.
        for _ in 0..100 {
            if !matches!(done, Err(DataplaneError::NotReady)) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            done = actor.send(apply()).await.expect("mailbox");
        }
        done.expect("attach");
        let port = veth_host_name("backend", name);
        let listed =
            fw.0.current()
                .is_some_and(|spec| spec.ports.iter().any(|p| p.port == port));
        assert!(
            listed,
            "{name}'s attach was answered before its port was guarded"
        );
    }
    // One ruleset for the host's first pass and one per attach: the attach's own pass sends
    // its part once, not again after the kernel.
    assert_eq!(fw.0.history().len(), 3, "{:#?}", fw.0.history());
}
