//! Lab tier, `shibafu-cni` under spec 1.1.0: a conflist offering 1.0.0 and 1.1.0 in
//! `cniVersions` runs at 1.1.0 (the highest both speak), and the whole lifecycle, GC and
//! STATUS (the commands 1.1.0 added) work at it; CHECK through the plugin of an attachment the
//! agent does not have (code 3) and with no agent (code 11); and a chained tuning that changes
//! the container's MAC, which shibafu's CHECK reports (docs/cni.md, "Chaining").

use serde_json::json;
use shibafu_tests::cni::Runtime;
use shibafu_tests::cni_conf::{conflist, conflist_at, shibafu_plugin};
use shibafu_tests::cni_lab::{cni_ids, container, lab_with_net, lifecycle_after, result_ip, NET};
use shibafu_tests::unique_name;

#[test]
fn a_conflist_offering_1_1_0_runs_add_check_del_gc_and_status_at_it() {
    let Some(lab) = lab_with_net(2) else { return };
    let plugin = shibafu_plugin(&lab, "node1", NET);
    let list = conflist_at("1.0.0", &["1.0.0", "1.1.0"], "sf11", vec![plugin.clone()]);
    let rt = Runtime::new(&lab, "node1", list);
    assert_eq!(rt.cni_version(), "1.1.0", "the runtime selects 1.1.0");

    let (ns, att) = container("cniv");
    let add = rt.add(&att);
    let r = add.expect_ok("ADD at 1.1.0");
    assert_eq!(r["cniVersion"], "1.1.0", "{}", add.show());
    assert!(r["ips"][0]["address"].is_string(), "{}", add.show());
    let l = lifecycle_after(&rt, &att, &ns, add);
    l.check.expect_ok("CHECK at 1.1.0");
    l.check_extra_route
        .expect_ok("CHECK with an extra route at 1.1.0");
    l.add_again.expect_error(101, "second ADD at 1.1.0");
    assert_eq!(
        l.add_again.json["cniVersion"],
        "1.1.0",
        "{}",
        l.add_again.show()
    );
    l.check_link_gone
        .expect_seen_or_repaired("CHECK without eth0 at 1.1.0", "create veth");
    l.del.expect_ok("DEL at 1.1.0");
    l.del_again.expect_ok("DEL again at 1.1.0");

    // CHECK of an attachment never added: code 3 from the agent's answer, through the plugin.
    let (_ns_x, never) = container("cnix");
    rt.check(&never)
        .expect_error(3, "CHECK of an attachment the agent does not have");

    // GC at 1.1.0: the unlisted attachment goes, the listed one stays and checks out.
    let (_ns_a, a) = container("cnia");
    let (_ns_b, b) = container("cnib");
    let ip_a = result_ip(rt.add(&a).expect_ok("ADD a"), 0);
    rt.add(&b).expect_ok("ADD b");
    for call in rt.gc(&[&a]) {
        call.expect_ok("GC [a] at 1.1.0");
    }
    assert_eq!(
        cni_ids(&lab, "node1"),
        vec![a.container_id.clone()],
        "after GC [a]"
    );
    rt.check(&a).expect_ok("CHECK a after GC [a]");
    for call in rt.gc(&[]) {
        call.expect_ok("GC [] at 1.1.0");
    }
    assert!(cni_ids(&lab, "node1").is_empty(), "after GC []");
    let (_ns_c, c) = container("cnic");
    let ip_c = result_ip(rt.add(&c).expect_ok("ADD c"), 0);
    assert_eq!(ip_c, ip_a, "GC freed a's address");
    rt.del(&c).expect_ok("DEL c");

    // STATUS at 1.1.0: ready.
    rt.status().remove(0).expect_ok("STATUS at 1.1.0");

    // CHECK with no agent behind the socket path: try again later (11).
    let mut gone = plugin;
    gone["agent"] = json!(format!("/run/{}/agent.sock", unique_name("sf-none")));
    let none = Runtime::new(
        &lab,
        "node1",
        conflist_at("1.1.0", &[], "sfnone", vec![gone]),
    );
    let (_ns_n, n) = container("cnin");
    let call = none.check(&n);
    call.expect_error(11, "CHECK without an agent");
    assert_eq!(call.json["cniVersion"], "1.1.0", "{}", call.show());
    lab.down();
}

#[test]
fn check_reports_a_container_mac_changed_by_a_chained_tuning() {
    let Some(lab) = lab_with_net(2) else { return };
    // At 1.0.0: Debian's reference plugins (1.1.1) do not speak 1.1.0.
    let tuning = json!({"type": "tuning", "capabilities": {"mac": true}});
    let list = conflist("sftune", vec![shibafu_plugin(&lab, "node1", NET), tuning]);
    let rt = Runtime::new(&lab, "node1", list);
    let (ns, mut att) = container("cnim");
    let mac = "00:11:22:33:44:66";
    att.capability_args.insert("mac".into(), json!(mac));
    let add = rt.add(&att);
    let r = add.expect_ok("ADD with tuning's mac");
    assert_eq!(
        r["interfaces"][2]["mac"],
        mac,
        "the final result: {}",
        add.show()
    );
    let link = ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(mac), "tuning set the MAC: {link}");
    // The final result names tuning's MAC; shibafu's is the attachment's: not as attached.
    let check = rt.check(&att);
    check.expect_error(102, "CHECK after tuning changed the MAC");
    let details = check.json["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("MAC") && details.contains(mac),
        "{}",
        check.show()
    );
    rt.del(&att).expect_ok("DEL of the chain");
    lab.down();
}
