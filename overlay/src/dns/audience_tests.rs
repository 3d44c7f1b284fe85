//! The audience: which networks a requester sees, and which addresses a change touches.

use super::*;

fn member(node: &str, name: &str, addrs: &[&str]) -> Member {
    Member {
        node: node.into(),
        name: name.into(),
        addrs: addrs.iter().map(|a| a.parse().expect("ip")).collect(),
    }
}

fn ip(a: &str) -> IpAddr {
    a.parse().expect("ip")
}

fn seen<'a>(a: &'a Audience, client: &str) -> Vec<&'a str> {
    a.networks_seen(ip(client)).into_iter().collect()
}

fn changed(a: &mut Audience) -> Vec<IpAddr> {
    a.take_changed().expect("tracked").into_iter().collect()
}

#[test]
fn a_workload_on_two_networks_sees_both_from_each_address() {
    let mut a = Audience::default();
    let api_b = member("node1", "api", &["10.1.0.5"]);
    let api_f = member("node1", "api", &["10.2.0.5", "fd00::5"]);
    a.add("backend", &api_b);
    a.add("frontend", &api_f);
    a.add("frontend", &member("node2", "web", &["10.2.0.9"]));
    assert_eq!(seen(&a, "10.1.0.5"), ["backend", "frontend"]);
    assert_eq!(seen(&a, "fd00::5"), ["backend", "frontend"]);
    assert_eq!(seen(&a, "10.2.0.9"), ["frontend"]);
    assert!(seen(&a, "10.9.9.9").is_empty(), "not a member's address");
    let same_name_other_node = member("node2", "api", &["10.1.0.6"]);
    a.add("backend", &same_name_other_node);
    assert_eq!(seen(&a, "10.1.0.6"), ["backend"], "another node's api");
    a.remove("frontend", &api_f);
    assert_eq!(seen(&a, "10.1.0.5"), ["backend"]);
    assert!(seen(&a, "10.2.0.5").is_empty());
    a.remove("backend", &api_b);
    a.remove("backend", &same_name_other_node);
    a.remove("frontend", &member("node2", "web", &["10.2.0.9"]));
    assert_eq!(a.seen_by_all(), (Vec::new(), false), "nothing left behind");
    assert!(a.networks.is_empty());
}

#[test]
fn a_change_touches_every_address_of_its_workload_and_no_other() {
    let mut a = Audience::default();
    a.add("backend", &member("node1", "api", &["10.1.0.5"]));
    a.add("backend", &member("node1", "db", &["10.1.0.7"]));
    changed(&mut a);
    a.add("frontend", &member("node1", "api", &["10.2.0.5"]));
    assert_eq!(
        changed(&mut a),
        [ip("10.1.0.5"), ip("10.2.0.5")],
        "joining a second network changes what its first address sees"
    );
    a.remove("backend", &member("node1", "db", &["10.1.0.7"]));
    assert_eq!(changed(&mut a), [ip("10.1.0.7")]);
    assert!(changed(&mut a).is_empty(), "taken: a new record starts");
    a.lose_track();
    assert!(
        a.take_changed().is_none(),
        "lost track: any may have changed"
    );
    assert!(a.take_changed().is_some());
}

#[test]
fn two_members_sharing_an_address_are_both_counted() {
    let mut a = Audience::default();
    let one = member("node1", "a", &["10.1.0.5"]);
    let two = member("node1", "b", &["10.1.0.5"]);
    a.add("backend", &one);
    a.add("frontend", &two);
    assert_eq!(seen(&a, "10.1.0.5"), ["backend", "frontend"]);
    a.remove("backend", &one);
    assert_eq!(
        seen(&a, "10.1.0.5"),
        ["frontend"],
        "the other still holds it"
    );
    a.add("backend", &one);
    a.add("backend", &one);
    a.remove("backend", &one);
    assert_eq!(
        seen(&a, "10.1.0.5"),
        ["backend", "frontend"],
        "one of two equal members left"
    );
}

/// A builder with the zones of two networks, backend (b) and frontend (f).
fn four_zones() -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    for z in [
        "b.local",
        "1.10.in-addr.arpa",
        "f.local",
        "2.10.in-addr.arpa",
    ] {
        b.zone(z);
    }
    b
}

#[test]
fn views_share_one_zone_list_per_set_of_networks() {
    let mut a = Audience::default();
    a.add("backend", &member("node1", "api", &["10.1.0.5"]));
    a.add("frontend", &member("node1", "api", &["10.2.0.5"]));
    a.add("backend", &member("node2", "db", &["10.1.0.7"]));
    let zones = |n: &str| -> Option<&'static [String]> {
        static B: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        static F: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        match n {
            "backend" => Some(B.get_or_init(|| vec!["b.local".into(), "1.10.in-addr.arpa".into()])),
            "frontend" => {
                Some(F.get_or_init(|| vec!["f.local".into(), "2.10.in-addr.arpa".into()]))
            }
            _ => None,
        }
    };
    let mut b = four_zones();
    let only = BTreeSet::from([ip("10.1.0.7")]);
    a.add_views(&mut b, Some(&only), zones);
    let snap = b.build().expect("build");
    let zone = |name: &str| {
        let at = snap.zones().position(|z| z.trim_end_matches('.') == name);
        at.expect("zone") as u16
    };
    assert!(snap.visible(ip("10.1.0.7"), zone("b.local")));
    assert!(!snap.visible(ip("10.1.0.7"), zone("f.local")));
    assert!(
        snap.visible(ip("10.1.0.5"), zone("f.local")),
        "not given a view: all"
    );
    let mut b = four_zones();
    a.add_views(&mut b, None, zones);
    let snap = b.build().expect("build");
    for client in ["10.1.0.5", "10.2.0.5"] {
        assert!(snap.visible(ip(client), zone("b.local")), "{client}");
        assert!(
            snap.visible(ip(client), zone("2.10.in-addr.arpa")),
            "{client}"
        );
    }
    assert!(!snap.visible(ip("10.1.0.7"), zone("f.local")));
}
