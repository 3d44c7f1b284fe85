use shibafu_overlay::model::{overlaps_v4, Isolation};

use super::*;

fn req(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnet: subnet.into(),
        ..CreateNetwork::default()
    }
}

fn net(name: &str, subnet: &str, vni: u32) -> Network {
    let mut n = network_from_request(&req(name, subnet)).expect("valid");
    n.vni = vni;
    n
}

fn err(r: &CreateNetwork) -> ApiError {
    network_from_request(r).expect_err("should be rejected")
}

#[test]
fn builds_a_network_with_defaults() {
    let n = network_from_request(&req("frontend", "172.21.0.0/24")).expect("valid");
    assert_eq!(n.zone, "frontend.local");
    assert_eq!(n.subnet.to_string(), "172.21.0.0/24");
    assert_eq!(n.gateway().to_string(), "172.21.0.1");
    assert!(n.subnet6.is_none() && n.mtu.is_none() && !n.internal && n.forwarders.is_empty());
}

#[test]
fn keeps_every_option() {
    let r = CreateNetwork {
        name: "backend".into(),
        subnet: "172.22.0.0/24".into(),
        subnet6: Some("fd00:22::/64".into()),
        zone: Some("Back.Example.".into()),
        mtu: Some(1400),
        internal: true,
        forwarders: vec![
            "10.0.0.53".into(),
            "10.0.0.54:5353".into(),
            "[fd00::53]:53".into(),
            "fd00::54".into(),
        ],
        isolation: Isolation::Strict,
        encrypted: false,
    };
    let n = network_from_request(&r).expect("valid");
    assert_eq!(n.isolation, Isolation::Strict);
    assert_eq!(n.zone, "back.example");
    assert_eq!(n.subnet6.expect("v6").to_string(), "fd00:22::/64");
    assert_eq!(n.mtu, Some(1400));
    assert!(n.internal);
    let fw: Vec<String> = n.forwarders.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        fw,
        [
            "10.0.0.53:53",
            "10.0.0.54:5353",
            "[fd00::53]:53",
            "[fd00::54]:53"
        ]
    );
}

#[test]
fn malformed_cidrs_are_explained() {
    let e = err(&req("a", "172.21.0.0/33"));
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.error,
        r#"network "a": invalid subnet "172.21.0.0/33": use CIDR notation such as 172.21.0.0/24"#
    );
    let e = err(&req("a", "172.21.0.0"));
    assert!(e.error.contains("missing prefix length"), "{}", e.error);
    let e = err(&req("a", "fd00::/64"));
    assert!(
        e.error.contains("is IPv6: give it as subnet6"),
        "{}",
        e.error
    );
    let e = err(&req("a", "banana"));
    assert!(
        e.error.contains(r#"invalid subnet "banana""#),
        "{}",
        e.error
    );
    let mut r = req("a", "172.21.0.0/24");
    r.subnet6 = Some("fd00::zz/64".into());
    assert!(err(&r).error.contains(r#"invalid subnet6 "fd00::zz/64""#));
    r.subnet6 = Some("10.0.0.0/8".into());
    assert!(err(&r).error.contains("is IPv4"));
}

#[test]
fn host_bits_and_small_subnets_are_rejected() {
    let e = err(&req("a", "172.21.0.5/24"));
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.error,
        r#"network "a": subnet 172.21.0.5/24 has host bits set: did you mean 172.21.0.0/24?"#
    );
    assert!(err(&req("a", "172.21.0.0/30")).error.contains("too small"));
    let mut r = req("a", "172.21.0.0/24");
    r.subnet6 = Some("fd00::1/64".into());
    assert!(err(&r).error.contains("did you mean fd00::/64?"));
}

#[test]
fn invalid_labels_zone_mtu_and_forwarders() {
    for bad in ["Frontend", "", "-a", "a-", "a.b", "a_b", " a"] {
        let e = err(&req(bad, "172.21.0.0/24"));
        assert_eq!(e.kind, ErrorKind::Invalid, "{bad}");
        assert!(
            e.error.starts_with(&format!("invalid name {bad:?}")),
            "{}",
            e.error
        );
    }
    let mut r = req("a", "172.21.0.0/24");
    r.zone = Some("bad..zone".into());
    assert!(err(&r).error.contains(r#"invalid zone "bad..zone""#));
    let mut r = req("a", "172.21.0.0/24");
    r.mtu = Some(70000);
    assert!(err(&r).error.contains("mtu 70000 out of range"));
    let mut r = req("a", "172.21.0.0/24");
    r.forwarders = vec!["dns.example".into()];
    assert!(err(&r).error.contains(r#"invalid forwarder "dns.example""#));
    r.forwarders = vec!["10.0.0.1:0".into()];
    assert!(err(&r).error.contains("port 0"));
}

#[test]
fn duplicate_name_and_zone() {
    let existing = [net("frontend", "172.21.0.0/24", 4096)];
    let e = check_conflicts(&net("frontend", "10.9.0.0/24", 0), &existing).expect_err("dup");
    assert_eq!(e.kind, ErrorKind::Duplicate);
    assert_eq!(
        e.error,
        r#"network "frontend" already exists (172.21.0.0/24)"#
    );
    let mut other = net("web", "10.9.0.0/24", 0);
    other.zone = "frontend.local".into();
    let e = check_conflicts(&other, &existing).expect_err("zone");
    assert_eq!(e.kind, ErrorKind::Duplicate);
    assert!(e
        .error
        .contains(r#"zone "frontend.local" is already used by network "frontend""#));
}

#[test]
fn overlaps_v4_both_ways() {
    let existing = [
        net("legacy", "172.22.0.0/16", 4096),
        net("frontend", "172.21.0.0/24", 4097),
    ];
    let e = check_conflicts(&net("backend", "172.22.0.0/24", 0), &existing).expect_err("inside");
    assert_eq!(e.kind, ErrorKind::Overlap);
    assert_eq!(
        e.error,
        r#"network "backend": subnet 172.22.0.0/24 overlaps network "legacy" (172.22.0.0/16)"#
    );
    let e = check_conflicts(&net("big", "172.16.0.0/12", 0), &existing).expect_err("around");
    assert!(
        e.error.contains(r#"overlaps network "legacy""#),
        "{}",
        e.error
    );
    check_conflicts(&net("db", "172.23.0.0/24", 0), &existing).expect("disjoint");
    assert!(!overlaps_v4(
        &"10.0.0.0/25".parse().expect("n"),
        &"10.0.0.128/25".parse().expect("n")
    ));
}

#[test]
fn overlaps_v6() {
    let mut legacy = net("legacy", "172.22.0.0/24", 4096);
    legacy.subnet6 = Some("fd00::/48".parse().expect("v6"));
    let mut new = net("backend", "172.23.0.0/24", 0);
    new.subnet6 = Some("fd00:0:0:1::/64".parse().expect("v6"));
    let e = check_conflicts(&new, &[legacy.clone()]).expect_err("v6 overlap");
    assert_eq!(e.kind, ErrorKind::Overlap);
    assert_eq!(
        e.error,
        r#"network "backend": subnet6 fd00:0:0:1::/64 overlaps network "legacy" (fd00::/48)"#
    );
    new.subnet6 = Some("fd01::/64".parse().expect("v6"));
    check_conflicts(&new, &[legacy]).expect("disjoint v6");
}

#[test]
fn vni_is_the_smallest_free_one() {
    assert_eq!(free_vni(&[]).expect("free"), VNI_MIN);
    let existing = [
        net("a", "10.1.0.0/24", VNI_MIN),
        net("b", "10.2.0.0/24", VNI_MIN + 2),
    ];
    assert_eq!(free_vni(&existing).expect("free"), VNI_MIN + 1);
}

#[test]
fn every_bad_field_is_named() {
    let r = CreateNetwork {
        subnet6: Some("fd00::1/64".into()),
        zone: Some("a..b".into()),
        mtu: Some(100),
        forwarders: vec!["8.8.8.8".into(), "x".into()],
        ..req("Bad", "10.0.0.0/8")
    };
    let problems = network_fields(&r).expect_err("refused");
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["name", "subnet6", "forwarders/1", "zone", "mtu"]);
    assert!(problems[1].error.contains("has host bits set"));
    assert_eq!(
        err(&r).error,
        problems[0].error,
        "the route answers the first"
    );
}
