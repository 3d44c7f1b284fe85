use std::collections::BTreeMap;
use std::sync::Arc;

use shibafu_overlay::model::{Action, Direction, Policy, Rule};
use shibafu_overlay::policy::FakePolicyBackend;

use super::*;
use crate::testing::{endpoint, network, state_with, stored, FakePublisher};

struct Rig {
    actor: Addr<PolicyActor>,
    backend: Arc<FakePolicyBackend>,
    publisher: Arc<FakePublisher>,
}

fn rig() -> Rig {
    let backend = Arc::new(FakePolicyBackend::default());
    let publisher = Arc::new(FakePublisher::default());
    let actor = PolicyActor::new(
        "node1".into(),
        PolicyEnforcer::new(backend.clone()),
        RecordQueue::start(publisher.clone(), 2),
    )
    .reading_every(Duration::from_millis(20))
    .start();
    Rig {
        actor,
        backend,
        publisher,
    }
}

/// Waits until `f` holds (or fails after two seconds).
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

fn db_policy() -> Policy {
    Policy::new(
        "db",
        "database",
        vec![
            Rule::parse(Action::Deny, Direction::Ingress, "frontend").expect("rule"),
            Rule::parse(Action::Allow, Direction::Ingress, "service:api:5432").expect("rule"),
        ],
    )
}

/// Sends the cluster with `db_policy` stored and waits for its first load; returns that state.
async fn loaded(r: &Rig) -> Arc<ClusterState> {
    let (state, changes) = stored(&cluster(), &db_policy());
    r.actor.do_send(ClusterChanged {
        changes,
        state: state.clone(),
    });
    until("the first load", || r.backend.scripts().len() == 1).await;
    state
}

fn cluster() -> Arc<ClusterState> {
    state_with(
        &[
            network("frontend", "10.1.0.0/24", 4097),
            network("database", "10.3.0.0/24", 4099),
        ],
        &[
            endpoint("frontend", "f1", "node1", "10.1.0.2"),
            endpoint("database", "d1", "node1", "10.3.0.2"),
        ],
    )
}

#[actix::test]
async fn without_policies_only_a_leftover_table_is_removed() {
    let r = rig();
    r.actor.do_send(ClusterChanged {
        changes: vec![],
        state: cluster(),
    });
    until("the removal", || r.backend.scripts().len() == 1).await;
    assert!(r.backend.scripts()[0].contains("delete table inet shibafu-policy"));
    r.actor.do_send(ClusterChanged {
        changes: vec![],
        state: cluster(),
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.backend.scripts().len(), 1, "nothing more to do");
}

#[actix::test]
async fn a_policy_loads_whole_then_a_new_peer_is_one_element() {
    let r = rig();
    let state = loaded(&r).await;
    let first = &r.backend.scripts()[0];
    assert!(
        first.starts_with("table inet shibafu-policy {}\ndelete table"),
        "{first}"
    );
    assert!(
        first.contains("add element inet shibafu-policy tracked_n4 { 10.3.0.0/24 }"),
        "{first}"
    );
    let mut api = endpoint("frontend", "a1", "node2", "10.1.0.9");
    api.service = Some("api".into());
    let (state, changes) = stored(&state, &api);
    r.actor.do_send(ClusterChanged { changes, state });
    until("the change", || r.backend.scripts().len() == 2).await;
    assert_eq!(
        r.backend.scripts()[1],
        "# netlink\nadd element inet shibafu-policy svc_api_a4 { 10.1.0.9 }\n",
        "an instance elsewhere is one element over netlink, nothing else"
    );
}

#[actix::test]
async fn counters_are_published_when_they_move_and_removed_with_the_policy() {
    let r = rig();
    let state = loaded(&r).await;
    let names: Vec<String> = r.backend.scripts()[0]
        .lines()
        .filter_map(|l| l.strip_prefix("add counter inet shibafu-policy "))
        .map(|n| n.split(' ').next().unwrap_or(n).to_string())
        .collect();
    let deny = names
        .iter()
        .find(|n| n.contains("_r0_"))
        .expect("deny counter")
        .clone();
    r.backend.set_counters(Some(BTreeMap::from([(deny, 3)])));
    let key = "/shibafu/v1/policy-counters/db/node1".to_string();
    until("the counters", || r.publisher.keys().contains(&key)).await;
    let mut gone = (*state).clone();
    let rev = gone.revision() + 1;
    let changes = gone.apply(&shibafu_overlay::store::ClusterChange::Events(vec![
        shibafu_overlay::store::WatchEvent::Delete {
            key: "/shibafu/v1/policies/db".into(),
            mod_revision: rev,
        },
    ]));
    r.actor.do_send(ClusterChanged {
        changes,
        state: Arc::new(gone),
    });
    until("the counters to go", || !r.publisher.keys().contains(&key)).await;
    let published: Vec<String> = r.publisher.log();
    assert_eq!(
        published.iter().filter(|l| l.starts_with("put")).count(),
        1,
        "{published:?}"
    );
}

#[actix::test]
async fn a_changed_rule_loads_at_once_and_its_old_counter_goes_at_the_next_check() {
    let r = rig();
    r.backend.set_counters(Some(BTreeMap::new()));
    let state = loaded(&r).await;
    let mut changed = db_policy();
    changed.rules[1] =
        Rule::parse(Action::Allow, Direction::Ingress, "service:api:5433").expect("rule");
    let (state, changes) = stored(&state, &changed);
    r.actor.do_send(ClusterChanged { changes, state });
    until("the sweep", || r.backend.scripts().len() == 3).await;
    let scripts = r.backend.scripts();
    let old = scripts[0]
        .lines()
        .filter_map(|l| l.strip_prefix("add counter inet shibafu-policy "))
        .find(|n| n.contains("_r1_"))
        .expect("the rule's counter")
        .to_string();
    assert!(scripts[1].contains("add counter"), "{}", scripts[1]);
    assert!(!scripts[1].contains("delete counter"), "{}", scripts[1]);
    assert_eq!(
        scripts[2],
        format!("delete counter inet shibafu-policy {old}\n")
    );
}

#[actix::test]
async fn a_missing_table_is_loaded_again_whole() {
    let r = rig();
    let (state, changes) = stored(&cluster(), &db_policy());
    r.backend.set_counters(Some(BTreeMap::new()));
    r.actor.do_send(ClusterChanged { changes, state });
    until("the first load", || r.backend.scripts().len() == 1).await;
    r.backend.set_counters(None);
    until("the reload", || r.backend.scripts().len() == 2).await;
    assert!(r.backend.scripts()[1].contains("add table inet shibafu-policy"));
}

#[test]
fn counters_become_series_numbered_from_one_with_their_verdicts() {
    let names = vec![PolicyCounterNames {
        policy: "db".into(),
        rules: vec!["c0".into(), "c1".into(), "c2".into()],
        isolation: "iso".into(),
    }];
    let verdicts = BTreeMap::from([("db".to_string(), vec![Action::Deny, Action::Allow])]);
    let counts = BTreeMap::from([
        ("c0".to_string(), 4),
        ("c1".to_string(), 9),
        ("iso".to_string(), 2),
    ]);
    let get = |n: &str| counts.get(n).copied().unwrap_or(0);
    let s = series(&names, &verdicts, &get);
    let row =
        |rule: &str, verdict: &str, n: u64| (["db".to_string(), rule.into(), verdict.into()], n);
    // The third counter has no known action (a policy read before its change arrived): left out.
    assert_eq!(
        s,
        vec![
            row("1", "deny", 4),
            row("2", "allow", 9),
            row("isolation", "deny", 2)
        ]
    );
}
