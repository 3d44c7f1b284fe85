//! A network created a moment ago elsewhere: etcd has it, the watch has not brought it yet.

use super::*;
use crate::testing::with_object;
use shibafu_overlay::store::Store;

/// Puts `net` into the agent's store at a revision ahead of the state's, as the coordinator
/// would; answers the state the watch will bring.
async fn created_elsewhere(a: &Agent, state: &ClusterState, net: &Network) -> Arc<ClusterState> {
    while a.store.revision() <= state.revision() {
        a.store.put("/filler", vec![], None).await.expect("put");
    }
    a.store.put_object(net, None).await.expect("put");
    let mut next = with_object(state, net);
    while next.revision() < a.store.revision() {
        next = with_object(&next, net);
    }
    next
}

#[test]
fn an_attach_waits_for_the_watch_to_bring_a_network_etcd_has() {
    actix::System::new().block_on(async {
        let st = state_with(&[network("backend", "172.22.0.0/24", 4097)], &[]);
        let a = Agent::start("catch-up", st.clone());
        let frontend = network("frontend", "172.21.0.0/24", 4096);
        let caught = created_elsewhere(&a, &st, &frontend).await;
        let attach = a.attach("web", &["frontend"]);
        let deliver = async {
            actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
            a.net.do_send(ClusterChanged {
                changes: vec![],
                state: caught,
            });
        };
        let (attached, ()) = futures::join!(attach, deliver);
        let e = attached.expect("the attach waited for the network");
        assert_eq!(e.interfaces[0].endpoint.network, "frontend");
        assert_eq!(e.interfaces[0].endpoint.ipv4.to_string(), "172.21.0.2");
    });
}

#[test]
fn a_network_etcd_does_not_have_is_unknown_at_once() {
    actix::System::new().block_on(async {
        let a = Agent::start("no-catch-up", two_networks());
        let started = std::time::Instant::now();
        assert!(matches!(
            a.attach("web", &["nope"]).await,
            Err(AttachError::UnknownNetwork(_))
        ));
        assert!(
            started.elapsed() < crate::network_actor::catch_up::CATCH_UP,
            "no wait for a network nobody created"
        );
    });
}
