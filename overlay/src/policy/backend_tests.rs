//! The enforcer against a recording backend: what each change sends to the kernel.

use super::*;
use crate::policy::{Chain, Set, SetKind};

/// A table whose one rule counts with `counter` and drops from the `web` set.
fn table(counter: &str, web: &[&str]) -> Table {
    let mut t = Table::default();
    t.sets.insert(
        "web_a4".into(),
        Set {
            kind: SetKind::Addr4,
            elements: web.iter().map(|s| s.to_string()).collect(),
        },
    );
    t.counters.insert(counter.into());
    t.chains.insert(
        "base".into(),
        Chain {
            hook: Some("type filter hook forward priority filter - 10; policy accept;".into()),
            rules: vec![format!("ip saddr @web_a4 counter name \"{counter}\" drop")],
        },
    );
    t
}

fn setup() -> (Arc<FakePolicyBackend>, PolicyEnforcer) {
    let fake = Arc::new(FakePolicyBackend::default());
    (fake.clone(), PolicyEnforcer::new(fake))
}

#[tokio::test]
async fn a_changed_rule_leaves_its_old_counter_for_the_sweep() {
    let (fake, mut enf) = setup();
    enf.enforce(&table("c1", &["10.0.0.2"]))
        .await
        .expect("first");
    let script = enf
        .enforce(&table("c2", &["10.0.0.2"]))
        .await
        .expect("change")
        .expect("a script");
    assert!(
        script.contains("add counter inet shibafu-policy c2"),
        "{script}"
    );
    assert!(!script.contains("delete counter"), "{script}");
    assert!(enf.has_stale());
    assert_eq!(enf.sweep().await.expect("sweep"), 1);
    assert_eq!(
        fake.scripts().last().map(String::as_str),
        Some("delete counter inet shibafu-policy c1\n")
    );
    assert!(!enf.has_stale());
    assert_eq!(enf.sweep().await.expect("nothing"), 0);
    let runs = fake.scripts().len();
    assert_eq!(
        enf.enforce(&table("c2", &["10.0.0.2"]))
            .await
            .expect("same"),
        None
    );
    assert_eq!(fake.scripts().len(), runs, "nothing sent for what is held");
}

#[tokio::test]
async fn a_rule_changed_back_before_the_sweep_reuses_its_counter() {
    let (_fake, mut enf) = setup();
    enf.enforce(&table("c1", &["10.0.0.2"]))
        .await
        .expect("first");
    enf.enforce(&table("c2", &["10.0.0.2"]))
        .await
        .expect("change");
    let back = enf
        .enforce(&table("c1", &["10.0.0.2"]))
        .await
        .expect("back")
        .expect("a script");
    assert!(!back.contains("add counter"), "c1 is still there: {back}");
    assert_eq!(enf.stale, BTreeSet::from(["c2".to_string()]));
    // With a stale counter held, a member coming is still only an element over netlink.
    let join = enf
        .enforce(&table("c1", &["10.0.0.2", "10.0.0.3"]))
        .await
        .expect("join")
        .expect("a change");
    assert_eq!(join, "1 element changes over netlink");
    assert!(enf.has_stale());
}

#[tokio::test]
async fn a_whole_table_load_leaves_nothing_stale() {
    let (fake, mut enf) = setup();
    enf.enforce(&table("c1", &["10.0.0.2"]))
        .await
        .expect("first");
    fake.fail_next();
    enf.enforce(&table("c2", &["10.0.0.2"]))
        .await
        .expect("reloaded whole");
    assert!(
        !enf.has_stale(),
        "the reload replaced the table and its counters"
    );
}
