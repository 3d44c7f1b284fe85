use std::collections::BTreeMap;

use super::*;

fn set(kind: SetKind, items: &[&str]) -> Set {
    Set {
        kind,
        elements: items.iter().map(|s| s.to_string()).collect(),
    }
}

fn chain(rules: &[&str]) -> Chain {
    Chain {
        hook: None,
        rules: rules.iter().map(|s| s.to_string()).collect(),
    }
}

fn table() -> Table {
    let mut t = Table::default();
    t.sets.insert(
        "web_a4".into(),
        set(SetKind::Addr4, &["10.0.0.2", "10.0.0.3"]),
    );
    t.sets
        .insert("nets_n4".into(), set(SetKind::Net4, &["10.1.0.0/24"]));
    t.counters.insert("c0".into());
    t.chains.insert(
        "base".into(),
        Chain {
            hook: Some("type filter hook forward priority filter - 10; policy accept;".into()),
            rules: vec!["jump p".into()],
        },
    );
    t.chains.insert(
        "p".into(),
        chain(&["ip saddr @web_a4 counter name \"c0\" drop"]),
    );
    t
}

#[test]
fn the_same_table_is_no_change() {
    assert_eq!(render_diff(&table(), &table()), "");
}

#[test]
fn a_member_coming_and_going_touches_only_elements() {
    let old = table();
    let mut new = table();
    let web = new.sets.get_mut("web_a4").expect("set");
    web.elements.remove("10.0.0.2");
    web.elements.insert("10.0.0.9".into());
    assert_eq!(
        render_diff(&old, &new),
        "delete element inet shibafu-policy web_a4 { 10.0.0.2 }\n\
         add element inet shibafu-policy web_a4 { 10.0.0.9 }\n"
    );
}

#[test]
fn a_changed_chain_is_refilled_and_new_objects_come_before_their_rules() {
    let old = table();
    let mut new = table();
    new.sets
        .insert("db_a6".into(), set(SetKind::Addr6, &["fd00::2"]));
    new.counters.insert("c1".into());
    new.chains.insert(
        "p".into(),
        chain(&["ip6 saddr @db_a6 counter name \"c1\" meta mark set meta mark or 0x04000000"]),
    );
    let script = render_diff(&old, &new);
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(
        lines,
        [
            "add set inet shibafu-policy db_a6 { type ipv6_addr; }",
            "add element inet shibafu-policy db_a6 { fd00::2 }",
            "add counter inet shibafu-policy c1",
            "flush chain inet shibafu-policy p",
            "add rule inet shibafu-policy p ip6 saddr @db_a6 counter name \"c1\" meta mark set meta mark or 0x04000000",
        ]
    );
}

#[test]
fn what_goes_is_emptied_before_it_is_deleted() {
    let old = table();
    let mut new = table();
    new.chains.remove("p");
    new.chains.get_mut("base").expect("base").rules.clear();
    new.sets.remove("web_a4");
    new.counters.clear();
    let script = render_diff(&old, &new);
    let at = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {script}"))
    };
    assert!(at("flush chain inet shibafu-policy base") < at("delete chain inet shibafu-policy p"));
    assert!(at("flush chain inet shibafu-policy p") < at("delete chain inet shibafu-policy p"));
    assert!(at("delete chain inet shibafu-policy p") < at("delete set inet shibafu-policy web_a4"));
    assert!(
        !script.contains("nets_n4"),
        "unchanged set untouched: {script}"
    );
    assert!(
        !script.contains("counter"),
        "counters that went are swept later: {script}"
    );
    assert_eq!(
        render_counter_removal(&old.counters),
        "delete counter inet shibafu-policy c0\n"
    );
    assert!(holds(
        &old,
        &Table {
            counters: Default::default(),
            ..old.clone()
        }
    ));
    assert!(!holds(&new, &old), "a counter the kernel lacks");
}

#[test]
fn the_full_script_replaces_the_table_and_declares_before_use() {
    let kept = BTreeMap::from([("c0".to_string(), 7)]);
    let script = render_full(&table(), &kept);
    assert!(script.starts_with(
        "table inet shibafu-policy {}\ndelete table inet shibafu-policy\nadd table inet shibafu-policy\n"
    ));
    let at = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {script}"))
    };
    assert!(
        at("add chain inet shibafu-policy p\n") < at("add rule inet shibafu-policy base jump p")
    );
    assert!(
        at("add set inet shibafu-policy web_a4 { type ipv4_addr; }")
            < at("add rule inet shibafu-policy p ")
    );
    assert!(
        script.contains("add set inet shibafu-policy nets_n4 { type ipv4_addr; flags interval; }")
    );
    assert!(script.contains("add element inet shibafu-policy web_a4 { 10.0.0.2, 10.0.0.3 }"));
    assert!(
        script.contains("add counter inet shibafu-policy c0 { packets 7 bytes 0 }"),
        "counts kept"
    );
    assert!(script.contains(
        "add chain inet shibafu-policy base { type filter hook forward priority filter - 10; policy accept; }"
    ));
}

#[test]
fn only_address_changes_go_over_netlink() {
    let old = table();
    let mut new = table();
    let web = new.sets.get_mut("web_a4").expect("set");
    web.elements.remove("10.0.0.2");
    web.elements.insert("10.0.0.9".into());
    let changes = element_changes(&old, &new).expect("addresses only");
    let shown: Vec<String> = changes
        .iter()
        .map(|c| format!("{:?} {} {}", c.op, c.set, c.addr))
        .collect();
    assert_eq!(shown, ["Delete web_a4 10.0.0.2", "Add web_a4 10.0.0.9"]);
    assert_eq!(element_changes(&old, &old), Some(vec![]));
    let mut nets = table();
    nets.sets
        .get_mut("nets_n4")
        .expect("set")
        .elements
        .insert("10.2.0.0/24".into());
    assert!(
        element_changes(&old, &nets).is_none(),
        "prefix sets go through nft"
    );
    let mut chains = new.clone();
    chains.chains.get_mut("p").expect("p").rules.clear();
    assert!(
        element_changes(&old, &chains).is_none(),
        "rule changes go through nft"
    );
}
