//! An agent restarted while etcd does not answer: it must not hand out an address its running
//! workloads use. Recovery is tried again before the next attach, which fails until it works.

use super::*;

#[test]
fn no_address_is_handed_out_until_the_local_ones_are_recovered() {
    actix::System::new().block_on(async {
        let a = Agent::start("recovery", two_networks());
        let web = a.attach("web", &["backend"]).await.expect("attach");
        assert_eq!(web.interfaces[0].endpoint.ipv4.to_string(), "172.22.0.2");
        // The agent restarts (a fresh allocator over the same store and book) while etcd is away.
        a.store.set_available(false);
        let links = Links::new(
            "node1",
            Ipam::new(a.store.clone(), "node1"),
            a.store.clone(),
            &a.registry,
            a.dataplane.clone().recipient(),
        );
        let restarted = NetworkActor::new(links).start();
        restarted.do_send(ClusterChanged {
            changes: vec![],
            state: two_networks(),
        });
        let req = |name: &str| AttachRequest {
            name: name.into(),
            netns: format!("/run/test/{name}").into(),
            networks: vec!["backend".into()],
            ..Default::default()
        };
        a.dp.add_container("/run/test/x");
        let refused = restarted
            .send(AttachWorkload(req("x")))
            .await
            .expect("mailbox");
        assert!(
            matches!(&refused, Err(e) if e.to_api().kind == shibafu_overlay::api::ErrorKind::Unavailable),
            "an attach before recovery: {refused:?}"
        );
        a.store.set_available(true);
        let (x, _) = restarted
            .send(AttachWorkload(req("x")))
            .await
            .expect("mailbox")
            .expect("attach once etcd is back");
        assert_eq!(
            x.interfaces[0].endpoint.ipv4.to_string(),
            "172.22.0.3",
            "web's address was recovered first"
        );
    });
}
