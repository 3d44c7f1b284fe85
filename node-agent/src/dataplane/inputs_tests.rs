use std::sync::Arc;

use shibafu_overlay::model::{
    Action, Direction, Endpoint, Node, Peer, Policy, Proto, Rule, SCHEMA_VERSION,
};
use shibafu_overlay::netlink::FakeDataplane;

use super::super::tests::{backend_and_other, local, reconciler, rt};
use crate::testing::{endpoint, network, state_with, with_object, without_object, workload, Rng};

/// A policy on `network` letting in the instances of service `svc` from anywhere.
fn service_peers(network: &str, svc: &str) -> Policy {
    let rule = Rule {
        action: Action::Allow,
        direction: Direction::Ingress,
        peer: Peer::Service(svc.into()),
        ports: vec![],
        proto: Proto::Any,
    };
    Policy::new("from-svc", network, vec![rule])
}

#[test]
fn a_change_on_a_network_not_built_here_is_not_planned() {
    rt().block_on(async {
        let nets = backend_and_other();
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        let own = endpoint("backend", "api", "node1", "172.22.0.2");
        // node2's record comes with an endpoint of its.
        let anchor = endpoint("other", "anchor", "node2", "172.23.0.2");
        let base = state_with(&nets, &[own.clone(), anchor]);
        r.set_state(base.clone());
        r.resync().await.expect("adopt");
        dp.add_container("/run/test/api");
        let api = workload("api", std::slice::from_ref(&own));
        r.set_local(local(std::slice::from_ref(&api)));
        r.apply_local(&api.netns, true).await.expect("api");
        let planned = r.planned.clone().expect("planned");
        let (seen, fw) = (dp.observations().len(), r.firewall_inputs());

        // Endpoints come and go on a network nothing here is on: no plan, no kernel read, the
        // same firewall part, and the settled plan's basis follows the state.
        let far = endpoint("other", "far", "node2", "172.23.0.9");
        let came = with_object(&base, &far);
        r.set_state(came.clone());
        assert!(!r.reconcile_change().await.expect("far came"));
        r.set_state(without_object(&came, &far));
        assert!(!r.reconcile_change().await.expect("far went"));
        assert!(Arc::ptr_eq(&planned, r.planned.as_ref().expect("planned")));
        assert_eq!(dp.observations().len(), seen);
        assert_eq!(
            r.firewall_inputs(),
            fw,
            "the firewall part's inputs did not change"
        );
        let basis = r.basis.as_ref().expect("basis");
        assert!(Arc::ptr_eq(&basis.state, &r.state));

        // So the next attach still splices into the settled plan.
        dp.add_container("/run/test/web");
        let web_ep = endpoint("backend", "web", "node1", "172.22.0.3");
        let web = workload("web", std::slice::from_ref(&web_ep));
        r.set_local(local(&[api.clone(), web.clone()]));
        r.apply_local(&web.netns, true).await.expect("web");
        let only_web = shibafu_overlay::netlink::Scope::Workloads(vec!["/run/test/web".into()]);
        assert_eq!(dp.observations().last(), Some(&only_web));

        // The watch echoing the attach (this node's own endpoint) is not planned either.
        let planned = r.planned.clone().expect("planned");
        r.set_state(with_object(&r.state.clone(), &web_ep));
        assert!(!r.reconcile_change().await.expect("echo"));
        assert!(Arc::ptr_eq(&planned, r.planned.as_ref().expect("planned")));

        // A remote endpoint on backend is planned and applied.
        let planned = r.planned.clone().expect("planned");
        let db = endpoint("backend", "db", "node2", "172.22.0.66");
        r.set_state(with_object(&r.state.clone(), &db));
        assert!(r.reconcile_change().await.expect("db"));
        assert!(!Arc::ptr_eq(&planned, r.planned.as_ref().expect("planned")));
        assert!(dp.state().fdb.iter().any(|e| e.mac == db.mac));

        // With a policy naming its peers by service, any endpoint may bring a network into
        // use: a change elsewhere is planned (and here changes nothing).
        let policed = with_object(&r.state.clone(), &service_peers("backend", "cache"));
        r.set_state(policed.clone());
        r.reconcile_change().await.expect("policy");
        let planned = r.planned.clone().expect("planned");
        r.set_state(with_object(&policed, &far));
        r.reconcile_change().await.expect("far again");
        assert!(!Arc::ptr_eq(&planned, r.planned.as_ref().expect("planned")));
    });
}

/// The record of `name`, at 10.0.0.`n`.
fn node(name: &str, n: u8) -> Node {
    Node {
        schema: SCHEMA_VERSION,
        name: name.into(),
        underlay: std::net::IpAddr::from([10, 0, 0, n]),
        version: "test".into(),
        wg: None,
        started_at: 0,
    }
}

/// A random endpoint change: on `backend` (built here), `other` (not), or `extra` (built only
/// while a link to backend stands), on this node (records its book does not hold), node2,
/// node3, or a node with no record.
fn random_endpoint(rng: &mut Rng) -> Endpoint {
    let (net, prefix) = [
        ("backend", "172.22.0"),
        ("other", "172.23.0"),
        ("extra", "172.24.0"),
    ][rng.below(3)];
    let node = ["node1", "node2", "node3", "node9"][rng.below(4)];
    let i = 10 + rng.below(20);
    let mut e = endpoint(net, &format!("e{i}"), node, &format!("{prefix}.{i}"));
    if rng.below(3) == 0 {
        e.service = Some("cache".into());
    }
    e
}

#[test]
fn skipping_the_plan_never_misses_a_change_of_it() {
    rt().block_on(async {
        let nets = [
            network("backend", "172.22.0.0/24", 4097),
            network("other", "172.23.0.0/24", 4098),
            network("extra", "172.24.0.0/24", 4099),
        ];
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let dp = Arc::new(FakeDataplane::new());
            let mut r = reconciler(&dp, 1500);
            let own = endpoint("backend", "api", "node1", "172.22.0.2");
            let mut state = state_with(&nets, std::slice::from_ref(&own));
            state = with_object(&with_object(&state, &node("node2", 2)), &node("node3", 3));
            r.set_state(state.clone());
            dp.add_container("/run/test/api");
            let api = workload("api", std::slice::from_ref(&own));
            r.set_local(local(std::slice::from_ref(&api)));
            r.resync().await.expect("adopt");
            let mut present: Vec<Endpoint> = Vec::new();
            for step in 0..30 {
                state = match rng.below(8) {
                    0 if !present.is_empty() => {
                        let gone = present.swap_remove(rng.below(present.len()));
                        without_object(&state, &gone)
                    }
                    1 => {
                        let link = shibafu_overlay::model::Link::new("backend", "extra");
                        if state.linked("backend", "extra") {
                            without_object(&state, &link)
                        } else {
                            with_object(&state, &link)
                        }
                    }
                    2 if rng.below(2) == 0 => {
                        // node3 dies or comes back.
                        let n3 = node("node3", 3);
                        if state.nodes().contains_key("node3") {
                            without_object(&state, &n3)
                        } else {
                            with_object(&state, &n3)
                        }
                    }
                    2 => {
                        let p = service_peers("backend", "cache");
                        if state.policies().is_empty() {
                            with_object(&state, &p)
                        } else {
                            without_object(&state, &p)
                        }
                    }
                    _ => {
                        let e = random_endpoint(&mut rng);
                        present.retain(|p| !(p.network == e.network && p.id == e.id));
                        present.push(e.clone());
                        with_object(&state, &e)
                    }
                };
                r.set_state(state.clone());
                r.reconcile_change().await.expect("pass");
                let (whole, _) = r.desired().expect("plan");
                let settled = &r.settled.as_ref().expect("settled").0;
                assert_eq!(**settled, whole, "seed {seed}, step {step}");
            }
        }
    });
}
