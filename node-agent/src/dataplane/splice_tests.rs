//! Spliced attach plans against whole plans, and the cases that must be planned whole.

use std::sync::Arc;

use shibafu_overlay::firewall::{planned_ports, GuardPorts};
use shibafu_overlay::model::{Action, Direction, Network, Peer, Policy, PortRange, Proto, Rule};
use shibafu_overlay::netlink::{FakeDataplane, Scope};

use super::super::tests::{local, reconciler, rt};
use super::super::Reconciler;
use crate::registry::book::Entry;
use crate::testing::{endpoint, network, state_with, with_object, workload};

fn on(name: &str, nets: &[(&str, &str)]) -> Entry {
    let eps: Vec<_> = nets
        .iter()
        .map(|(net, ip)| endpoint(net, name, "node1", ip))
        .collect();
    workload(name, &eps)
}

fn backend_and_frontend() -> [Network; 2] {
    [
        network("backend", "172.22.0.0/24", 4097),
        network("frontend", "172.21.0.0/24", 4098),
    ]
}

#[test]
fn a_spliced_attach_plans_what_a_whole_plan_would() {
    rt().block_on(async {
        let nets = backend_and_frontend();
        let remote = endpoint("backend", "db", "node2", "172.22.0.66");
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(state_with(&nets, std::slice::from_ref(&remote)));
        let mut book = vec![on("api", &[("backend", "172.22.0.2")])];
        dp.add_container("/run/test/api");
        r.set_local(local(&book));
        r.resync().await.expect("adopt");
        // Each name sorts somewhere else among the namespaces: the splice keeps the order.
        for (name, ip) in [
            ("web", "172.22.0.3"),
            ("b2", "172.22.0.4"),
            ("zz", "172.22.0.5"),
        ] {
            book.push(on(name, &[("backend", ip)]));
            dp.add_container(format!("/run/test/{name}"));
            r.set_local(local(&book));
            let netns = book.last().expect("entry").netns.clone();
            let spliced = r.spliced(&netns).expect("a plain attach is spliced");
            assert_eq!(*spliced, r.desired().expect("whole").0, "{name}");
            assert_eq!(guard(&r), whole_guard(&r), "{name}");
            // As the splice's reconcile would leave it; the attach then splices again.
            r.settled = r.basis.clone().map(|b| (spliced, b));
            r.apply_local(&netns, true).await.expect("attach");
            assert_eq!(
                dp.observations().last(),
                Some(&Scope::Workloads(vec![netns.clone()]))
            );
            assert_eq!(
                r.planned.as_deref(),
                Some(&r.desired().expect("whole").0),
                "{name}"
            );
        }
        // A namespace whose container got another address: its old port binding goes.
        book[2] = on("b2", &[("backend", "172.22.0.9")]);
        r.set_local(local(&book));
        let spliced = r.spliced(&book[2].netns).expect("one namespace changed");
        assert_eq!(*spliced, r.desired().expect("whole").0);
        assert_eq!(guard(&r), whole_guard(&r));
        assert!(
            guard(&r).iter().all(|p| p.ipv4.octets()[3] != 4),
            "b2's old binding"
        );
        r.resync().await.expect("resync");
        assert!(dp
            .ops()
            .iter()
            .all(|op| !op.to_string().contains("delete") || op.to_string().contains("b2")));
    });
}

/// The source guard's ports of the reconciler's last plan (as its firewall part lists them).
fn guard(r: &Reconciler) -> GuardPorts {
    r.firewall_part().expect("planned").expect("part").ports
}

/// The source guard's ports of a whole plan of the same inputs.
fn whole_guard(r: &Reconciler) -> GuardPorts {
    planned_ports(&r.desired().expect("whole").0)
}

#[test]
fn attaches_that_change_more_than_their_namespace_are_planned_whole() {
    rt().block_on(async {
        let nets = backend_and_frontend();
        let api = on("api", &[("backend", "172.22.0.2")]);
        let web = on("web", &[("backend", "172.22.0.3")]);
        let (dp, mut r) = adopted(&[api.clone(), web.clone()]).await;
        let cache = on("cache", &[("backend", "172.22.0.4")]);
        // A network not built here yet.
        let front = on("front", &[("frontend", "172.21.0.2")]);
        r.set_local(local(&[api.clone(), web.clone(), front.clone()]));
        assert!(r.spliced(&front.netns).is_none(), "frontend is not built");
        // A workload elsewhere went.
        r.set_local(local(&[api.clone(), cache.clone()]));
        assert!(r.spliced(&cache.netns).is_none(), "web went");
        // A workload elsewhere changed.
        let web2 = on("web", &[("backend", "172.22.0.9")]);
        r.set_local(local(&[api.clone(), web2, cache.clone()]));
        assert!(r.spliced(&cache.netns).is_none(), "web changed");
        // The cluster changed since the settled plan.
        r.set_local(local(&[api.clone(), web.clone(), cache.clone()]));
        let remote = endpoint("backend", "db", "node2", "172.22.0.66");
        r.set_state(state_with(&nets, &[remote]));
        assert!(r.spliced(&cache.netns).is_none(), "the cluster changed");
        // Planned whole, applied: the next one is spliced again.
        dp.add_container("/run/test/cache");
        r.apply_local(&cache.netns, true).await.expect("cache");
        let more = on("more", &[("backend", "172.22.0.5")]);
        r.set_local(local(&[api, web, cache, more.clone()]));
        assert!(r.spliced(&more.netns).is_some());
    });
}

#[test]
fn the_first_container_on_a_network_built_for_a_policy_brings_its_peers_in() {
    rt().block_on(async {
        let nets = [
            network("front", "172.21.0.0/24", 4097),
            network("database", "172.23.0.0/24", 4098),
            network("backend", "172.22.0.0/24", 4099),
        ];
        // database lets backend in: every node builds database (a path from anywhere), and a
        // node with a container on database builds backend too, for the replies.
        let mut policy = Policy::new("db", "database", vec![]);
        policy.rules.push(Rule {
            action: Action::Allow,
            direction: Direction::Ingress,
            peer: Peer::Network("backend".into()),
            ports: vec![PortRange {
                from: 5432,
                to: 5432,
            }],
            proto: Proto::Tcp,
        });
        let dp = Arc::new(FakeDataplane::new());
        let mut r = reconciler(&dp, 1500);
        r.set_state(with_object(&state_with(&nets, &[]), &policy));
        let web = on("web", &[("front", "172.21.0.2")]);
        dp.add_container("/run/test/web");
        r.set_local(local(std::slice::from_ref(&web)));
        r.resync().await.expect("adopt");
        let built = |r: &super::Reconciler, n: &str| {
            r.planned.as_ref().is_some_and(|d| d.network(n).is_some())
        };
        assert!(built(&r, "database") && !built(&r, "backend"));
        let db = on("db", &[("database", "172.23.0.64")]);
        dp.add_container("/run/test/db");
        r.set_local(local(&[web, db.clone()]));
        assert!(r.spliced(&db.netns).is_none(), "backend comes into use");
        r.apply_local(&db.netns, true).await.expect("db");
        assert!(
            built(&r, "backend"),
            "the replies to backend have no way back"
        );
    });
}

/// A reconciler on backend and frontend that adopted `book` (its namespaces in the fake kernel).
async fn adopted(book: &[Entry]) -> (Arc<FakeDataplane>, Reconciler) {
    let dp = Arc::new(FakeDataplane::new());
    let mut r = reconciler(&dp, 1500);
    r.set_state(state_with(&backend_and_frontend(), &[]));
    for e in book {
        dp.add_container(&e.netns);
    }
    r.set_local(local(book));
    r.resync().await.expect("adopt");
    (dp, r)
}

/// Workload `name` on `net` in `first`'s namespace, as its second interface.
fn beside(first: &Entry, name: &str, net: &str, ip: &str) -> Entry {
    let mut e = on(name, &[(net, ip)]);
    e.netns = first.netns.clone();
    e.interfaces[0].ifname = "eth1".into();
    e
}

#[test]
fn a_second_workload_in_a_planned_namespace_keeps_the_first_ones_endpoints() {
    rt().block_on(async {
        let api = on("api", &[("backend", "172.22.0.2")]);
        let (_dp, mut r) = adopted(std::slice::from_ref(&api)).await;
        // Another workload in the same namespace (a pod's second attachment, say): the
        // namespace is already planned, so its workloads are not only the one that came.
        let sidecar = beside(&api, "sidecar", "frontend", "172.21.0.3");
        r.set_local(local(&[api.clone(), sidecar]));
        assert!(
            r.spliced(&api.netns).is_none(),
            "frontend is not built here"
        );
        let sidecar = beside(&api, "sidecar", "backend", "172.22.0.3");
        r.set_local(local(&[api.clone(), sidecar]));
        let spliced = r.spliced(&api.netns).expect("only the namespace changed");
        assert_eq!(*spliced, r.desired().expect("whole").0);
        assert_eq!(spliced.endpoints.len(), 2, "{:#?}", spliced.endpoints);
    });
}
