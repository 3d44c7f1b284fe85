use std::net::IpAddr;
use std::sync::Arc;

use shibafu_overlay::netlink::watch::Damage;
use shibafu_overlay::netlink::{Dataplane, FakeDataplane};
use shibafu_overlay::plan::Op;

use super::super::tests::{backend_and_other, local, reconciler, rt};
use crate::testing::{endpoint, state_with, with_object, without_object, workload};

#[test]
fn a_change_plans_against_the_kernel_as_last_read_until_something_else_touches_it() {
    rt().block_on(async {
        let nets = backend_and_other();
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        let own = endpoint("backend", "api", "node1", "172.22.0.2");
        // node2's and node3's records come with an endpoint of each.
        let base = state_with(
            &nets,
            &[
                own.clone(),
                endpoint("other", "n2", "node2", "172.23.0.2"),
                endpoint("other", "n3", "node3", "172.23.0.3"),
            ],
        );
        r.set_state(base.clone());
        dp.add_container("/run/test/api");
        let api = workload("api", std::slice::from_ref(&own));
        r.set_local(local(std::slice::from_ref(&api)));
        r.resync().await.expect("adopt");
        // The adoption created links, so the mirror waits for the next read: this one.
        r.resync().await.expect("read again");
        let seen = dp.observations().len();
        let vtep = |ip: &str| ip.parse::<IpAddr>().expect("ip");
        let fdb_of = |dp: &FakeDataplane, mac| -> Vec<IpAddr> {
            let st = dp.state();
            st.fdb
                .iter()
                .filter(|f| f.mac == mac)
                .map(|f| f.vtep)
                .collect()
        };

        // A remote endpoint comes, moves to another node, goes: no dump, the kernel follows.
        let db = endpoint("backend", "db", "node2", "172.22.0.66");
        let came = with_object(&base, &db);
        r.set_state(came.clone());
        assert!(r.reconcile_change().await.expect("db came"));
        assert_eq!(fdb_of(&dp, db.mac), [vtep("10.0.0.2")]);
        let mut moved = db.clone();
        moved.node = "node3".into();
        r.set_state(with_object(&came, &moved));
        assert!(r.reconcile_change().await.expect("db moved"));
        assert_eq!(fdb_of(&dp, db.mac), [vtep("10.0.0.3")]);
        r.set_state(without_object(&came, &db));
        assert!(r.reconcile_change().await.expect("db went"));
        assert!(fdb_of(&dp, db.mac).is_empty());
        assert_eq!(
            dp.observations().len(),
            seen,
            "a change pass dumped the kernel"
        );

        // Someone deletes an entry by hand: the repair reads the kernel and puts it back.
        r.set_state(came.clone());
        r.reconcile_change().await.expect("db again");
        let neigh = Op::DelNeigh {
            bridge: "sfbr1001".into(),
            ip: IpAddr::V4(db.ipv4),
        };
        assert!(dp.apply(std::slice::from_ref(&neigh)).await.is_ok());
        assert!(!dp
            .state()
            .neighbours
            .iter()
            .any(|n| n.ip == IpAddr::V4(db.ipv4)));
        assert!(r.repair(&[Damage::Neighbour]).await.expect("repair") > 0);
        assert_eq!(dp.observations().len(), seen + 1);
        assert!(dp
            .state()
            .neighbours
            .iter()
            .any(|n| n.ip == IpAddr::V4(db.ipv4)));

        // An attach creates links: the next change pass reads the kernel, the one after not.
        dp.add_container("/run/test/web");
        let web = workload("web", &[endpoint("backend", "web", "node1", "172.22.0.3")]);
        r.set_local(local(&[api.clone(), web.clone()]));
        r.apply_local(&web.netns, true).await.expect("web");
        let seen = dp.observations().len();
        r.set_state(with_object(
            &came,
            &endpoint("backend", "x", "node2", "172.22.0.70"),
        ));
        assert!(r.reconcile_change().await.expect("x"));
        assert_eq!(dp.observations().len(), seen + 1);
        r.set_state(with_object(
            &came,
            &endpoint("backend", "y", "node3", "172.22.0.71"),
        ));
        assert!(r.reconcile_change().await.expect("y"));
        assert_eq!(dp.observations().len(), seen + 1);

        // The kernel is where the mirror said: a full resync finds nothing to do.
        let logged = dp.ops().len();
        r.resync().await.expect("resync");
        assert_eq!(dp.ops().len(), logged, "{:#?}", &dp.ops()[logged..]);
    });
}
