//! Lab tier, the CNI plugin `shibafu-cni` driven the way a container runtime (libcni) drives
//! it: ADD/CHECK/DEL of one attachment with hand-made damage in between, GC against the
//! runtime's list of valid attachments, STATUS while etcd is down, every error code bad input
//! can trigger, and the plugin answering to both type names it is installed under. Chaining and
//! cross-node DNS are in `lab_cni_chain.rs`, `/proc/PID/ns/net` sandboxes in `lab_cni_proc.rs`,
//! TRACEPARENT in `lab_cni_trace.rs`; all of these run at cniVersion 1.0.0, the same lifecycle
//! at 1.1.0 (selected through `cniVersions`) is in `lab_cni_v1_1.rs`.

use std::time::Duration;

use serde_json::{json, Value};
use shibafu_tests::cni::Runtime;
use shibafu_tests::cni_conf::{agent_socket, conflist, shibafu_plugin};
use shibafu_tests::cni_lab::{
    cni_entries, cni_ids, container, endpoints, lab_with_net, lifecycle_after, result_gateway,
    result_ip, NET,
};
use shibafu_tests::{unique_name, wait_until, Lab, NetnsGuard};

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(20);

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits until `ip` is (or is no longer) an endpoint of NET in `network inspect`.
fn await_endpoint(lab: &Lab, ip: &str, present: bool) {
    let mut seen = vec![];
    let ok = wait_until(SETTLE, POLL, || {
        seen = endpoints(lab, NET);
        seen.iter()
            .any(|e| e.to_string().contains(&format!("\"{ip}\"")))
            == present
    });
    assert!(
        ok,
        "endpoint {ip} present={present} expected; endpoints: {seen:?}"
    );
}

/// Whether NS still has an `eth0`.
fn has_eth0(ns: &NetnsGuard) -> bool {
    ns.ip(&["-o", "link"]).contains("eth0")
}

/// Asserts that node1 lists no CNI attachment and (if given) `ns` has no eth0.
fn nothing_attached(lab: &Lab, ns: Option<&NetnsGuard>, when: &str) {
    let entries = cni_entries(lab, "node1");
    assert!(entries.is_empty(), "{when}: ps lists {entries:?}");
    let links = ns.map(|ns| ns.ip(&["-o", "link"])).unwrap_or_default();
    assert!(!links.contains("eth0"), "{when}: eth0 left: {links}");
}

#[test]
fn add_check_del_follow_the_spec_and_free_the_address() {
    let Some(lab) = lab_with_net(2) else { return };
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let (ns, att) = container("cnia");
    let add = rt.add(&att);
    let r = add.expect_ok("ADD").clone();
    let (ip, gw) = (result_ip(&r, 0), result_gateway(&r));
    let addr = r["ips"][0]["address"].as_str().unwrap_or_default();
    let ifs = r["interfaces"].as_array().cloned().unwrap_or_default();
    let routes = r["routes"].to_string();
    #[rustfmt::skip]
    let checks = [
        (addr.starts_with("172.24.0.") && addr.ends_with("/24"), "v4 address of the subnet"),
        (gw.starts_with("172.24.0.") && r["cniVersion"] == "1.0.0", "gateway, cniVersion"),
        (ifs.len() == 3, "interfaces: bridge, host veth, container"),
        (ifs.iter().take(2).all(|i| i["sandbox"].is_null()), "host side without sandbox"),
        (ifs.get(2).is_some_and(|i| i["name"] == "eth0"), "container interface eth0"),
        (ifs.get(2).is_some_and(|i| i["sandbox"] == json!(att.netns)), "its sandbox"),
        (ifs.get(2).is_some_and(|i| i["mac"].as_str().is_some_and(|m| m.len() == 17)), "mac"),
        (r["ips"][0]["interface"] == 2, "the address is on interface 2"),
        (routes.contains("\"0.0.0.0/0\"") && routes.contains(&gw), "default route via gw"),
        (r["dns"]["nameservers"] == json!([gw]), "nameserver: the gateway"),
        (r["dns"]["domain"] == "cninet.local", "domain: the zone"),
        (r["dns"]["search"] == json!(["cninet.local"]), "search: the zone"),
    ];
    for (ok, what) in checks {
        assert!(ok, "ADD result, {what}: {}", add.show());
    }
    let addrs = ns.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(addr), "eth0 in the container: {addrs}");
    let default = ns.ip(&["route", "show", "default"]);
    assert!(
        default.contains(&format!("via {gw}")),
        "default route: {default}"
    );
    // Listed by ps under the id's first 12 characters, and as an endpoint owned by CNI.
    let entries = cni_entries(&lab, "node1");
    let listed = entries.iter().any(|c| {
        c["name"] == att.container_id[..12]
            && c["state"] == "attached"
            && c["cni"] == json!(att.container_id)
    });
    assert!(listed, "ps --format json: {entries:?}");
    await_endpoint(&lab, &ip, true);
    let eps = endpoints(&lab, NET);
    assert!(
        eps.iter().any(|e| e["owner"] == "cni"),
        "endpoints: {eps:?}"
    );

    let l = lifecycle_after(&rt, &att, &ns, add);
    l.check.expect_ok("CHECK");
    l.check_extra_route.expect_ok("CHECK with an extra route");
    l.add_again.expect_error(101, "second ADD");
    l.check_link_gone
        .expect_seen_or_repaired("CHECK without eth0", "create veth");
    l.del.expect_ok("DEL");
    l.del_again.expect_ok("DEL again");
    nothing_attached(&lab, None, "after DEL");
    await_endpoint(&lab, &ip, false);
    // The lowest free address is handed out again; DEL after the namespace went still works.
    let (ns2, att2) = container("cnib");
    let again = rt.add(&att2);
    let same = result_ip(again.expect_ok("ADD after DEL"), 0) == ip;
    assert!(same, "{ip} not reused: {}", again.show());
    drop(ns2);
    rt.del(&att2)
        .expect_ok("DEL after the namespace was deleted");
    nothing_attached(&lab, None, "after DEL without namespace");
    await_endpoint(&lab, &ip, false);

    // A network with IPv6: a v6 address and default route too.
    let v6net = "network create cni6 172.25.0.0/24 --subnet6 fd00:25::/64";
    lab.cli_ok("node1", &v6net.split(' ').collect::<Vec<_>>());
    let rt6 = Runtime::shibafu(&lab, "node1", "cni6");
    let (ns6, att6) = container("cnic");
    let add6 = rt6.add(&att6);
    let r6 = add6.expect_ok("ADD on cni6");
    let v6 = r6["ips"][1]["address"].as_str().unwrap_or_default();
    let v6_ok = v6.starts_with("fd00:25::") && v6.ends_with("/64");
    let route6 = r6["routes"].to_string().contains("\"::/0\"");
    assert!(v6_ok && route6, "v6 address and ::/0: {}", add6.show());
    let addrs6 = ns6.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs6.contains(v6), "{addrs6}");
    rt6.check(&att6).expect_ok("CHECK on cni6");
    rt6.del(&att6).expect_ok("DEL on cni6");
    lab.down();
}

#[test]
fn gc_removes_what_the_runtime_no_longer_lists() {
    let Some(lab) = lab_with_net(2) else { return };
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let (ns_a, a) = container("cnia");
    let (ns_b, b) = container("cnib");
    let ip_a = result_ip(rt.add(&a).expect_ok("ADD a"), 0);
    let ip_b = result_ip(rt.add(&b).expect_ok("ADD b"), 0);
    let both = sorted(vec![a.container_id.clone(), b.container_id.clone()]);
    assert_eq!(cni_ids(&lab, "node1"), both);
    // GC listing a: b goes (its interface too), a stays and still checks out.
    for call in rt.gc(&[&a]) {
        call.expect_ok("GC [a]");
    }
    assert_eq!(
        cni_ids(&lab, "node1"),
        vec![a.container_id.clone()],
        "after GC [a]"
    );
    await_endpoint(&lab, &ip_b, false);
    let gone = wait_until(SETTLE, POLL, || !has_eth0(&ns_b));
    assert!(gone, "eth0 left in b: {}", ns_b.ip(&["-o", "link"]));
    rt.check(&a).expect_ok("CHECK a after GC [a]");
    // b again (its address comes back), then GC with an empty list: both go.
    let ip_b2 = result_ip(rt.add(&b).expect_ok("ADD b again"), 0);
    assert_eq!(ip_b2, ip_b, "b's address was not reused");
    for call in rt.gc(&[]) {
        call.expect_ok("GC []");
    }
    nothing_attached(&lab, None, "after GC []");
    await_endpoint(&lab, &ip_a, false);
    await_endpoint(&lab, &ip_b, false);
    let gone = wait_until(SETTLE, POLL, || !has_eth0(&ns_a));
    assert!(gone, "eth0 left in a: {}", ns_a.ip(&["-o", "link"]));
    // Their addresses are free: two new attachments get exactly them.
    let (_ns_c, c) = container("cnic");
    let (_ns_d, d) = container("cnid");
    let ip_c = result_ip(rt.add(&c).expect_ok("ADD c"), 0);
    let ip_d = result_ip(rt.add(&d).expect_ok("ADD d"), 0);
    let (new, old) = (sorted(vec![ip_c, ip_d]), sorted(vec![ip_a, ip_b]));
    assert_eq!(new, old, "addresses not reused");
    lab.down();
}

/// The STATUS code of the (only) plugin of `rt` (0: success; `None`: no code), the call shown.
fn status_code(rt: &Runtime) -> (Option<u64>, String) {
    let call = rt.status().remove(0);
    call.expect_no_panic("STATUS");
    (if call.ok() { Some(0) } else { call.code() }, call.show())
}

#[test]
fn status_says_whether_the_agent_and_etcd_are_ready() {
    let Some(lab) = lab_with_net(2) else { return };
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let (code, shown) = status_code(&rt);
    assert_eq!(code, Some(0), "{shown}");
    let mut last = String::new();
    let mut reaches = |want: u64| {
        wait_until(Duration::from_secs(40), POLL, || {
            let (code, shown) = status_code(&rt);
            last = shown;
            code == Some(want)
        })
    };
    lab.lab_ok(&["stop", "etcd"]);
    let down = reaches(50);
    // etcd comes back before asserting, so the lab tears down cleanly either way.
    lab.lab_ok(&["start", "etcd"]);
    assert!(down, "STATUS with etcd stopped should fail with 50: {last}");
    assert!(reaches(0), "STATUS after etcd came back: {last}");
    rt.status()
        .remove(0)
        .expect_ok("STATUS after etcd came back");
    // No agent socket at all: not available either.
    let mut plugin = shibafu_plugin(&lab, "node1", NET);
    plugin["agent"] = json!(format!("/run/{}/agent.sock", unique_name("sf-none")));
    let none = Runtime::new(&lab, "node1", conflist("sf", vec![plugin]));
    none.status()
        .remove(0)
        .expect_error(50, "STATUS without an agent socket");
    lab.down();
}

/// A bad ADD: the code, what is wrong, CNI_* variables to change, config fields to change.
type Bad = (
    u64,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Bad ADDs: the code, what is wrong, CNI_* variables to change (empty: unset), and fields to
/// change in the config (null: remove; `STALE`: a socket nobody listens on; not JSON at all:
/// the whole stdin).
#[rustfmt::skip]
const BAD: &[Bad] = &[
    (1, "cniVersion 0.3.1", &[], r#"{"cniVersion":"0.3.1"}"#),
    (1, "cniVersion 9.9.9", &[], r#"{"cniVersion":"9.9.9"}"#),
    (2, "an ipam section", &[], r#"{"ipam":{"type":"host-local"}}"#),
    (3, "no such netns", &[("CNI_NETNS", "/run/netns/sf-no-such-ns")], "{}"),
    (3, "netns not a namespace", &[("CNI_NETNS", "/etc/hostname")], "{}"),
    (4, "unknown command", &[("CNI_COMMAND", "FROB")], "{}"),
    (4, "no CNI_CONTAINERID", &[("CNI_CONTAINERID", "")], "{}"),
    (4, "no CNI_IFNAME", &[("CNI_IFNAME", "")], "{}"),
    (4, "CNI_IFNAME of 16", &[("CNI_IFNAME", "abcdefghijklmnop")], "{}"),
    (6, "stdin not JSON", &[], "this is not json"),
    (7, "no network", &[], r#"{"network":null}"#),
    (7, "unknown network", &[], r#"{"network":"nope"}"#),
    (7, "type bridge", &[], r#"{"type":"bridge"}"#),
    (11, "agent not answering", &[], r#"{"agent":"STALE"}"#),
];

#[test]
fn bad_input_gets_the_spec_error_codes_and_leaves_nothing() {
    let Some(lab) = lab_with_net(2) else { return };
    let rt = Runtime::shibafu(&lab, "node1", NET);
    let (ns, att) = container("cnie");
    let stale = std::env::temp_dir().join(unique_name("sf-stale"));
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a socket"));
    let conf = json!({"cniVersion": "1.0.0", "name": "sf", "type": "shibafu", "network": NET,
        "agent": agent_socket(&lab, "node1")});
    for (code, what, vars, patch) in BAD {
        let mut env = att.env("ADD", &rt.cni_path());
        for (k, v) in *vars {
            env.retain(|(x, _)| x != k);
            if !v.is_empty() {
                env.push((k.to_string(), v.to_string()));
            }
        }
        let stdin = match serde_json::from_str::<Value>(patch) {
            Ok(Value::Object(fields)) => {
                let mut c = conf.clone();
                for (k, v) in fields {
                    match (v.is_null(), c.as_object_mut()) {
                        (true, Some(o)) => drop(o.remove(&k)),
                        _ if v == "STALE" => c[k] = json!(stale.display().to_string()),
                        _ => c[k] = v,
                    }
                }
                serde_json::to_vec(&c).expect("json")
            }
            _ => patch.as_bytes().to_vec(),
        };
        rt.raw("shibafu", &env, &stdin).expect_error(*code, what);
    }
    let _ = std::fs::remove_file(&stale);
    nothing_attached(&lab, Some(&ns), "after the bad ADDs");
    // A name already taken on the network: the agent refuses (100), nothing is left.
    lab.run_idle("node1", "taken", NET);
    let named = att
        .clone()
        .arg("IgnoreUnknown", "1")
        .arg("SHIBAFU_NAME", "taken");
    rt.add(&named).expect_error(100, "ADD of a taken name");
    nothing_attached(&lab, Some(&ns), "after a refused ADD");
    // A good ADD, the same again: already attached (101); DEL cleans up.
    rt.add(&att).expect_ok("ADD");
    rt.add(&att).expect_error(101, "second ADD");
    rt.del(&att).expect_ok("DEL");
    let v = rt.version().remove(0);
    let versions = v.expect_ok("VERSION")["supportedVersions"].to_string();
    let both = versions.contains("\"1.0.0\"") && versions.contains("\"1.1.0\"");
    assert!(both, "{}", v.show());
    lab.down();
}

#[test]
fn the_plugin_answers_to_both_type_names() {
    let Some(lab) = lab_with_net(2) else { return };
    // Installed under its own name, as `"type": "shibafu-cni"` finds it in CNI_PATH.
    let mut plugin = shibafu_plugin(&lab, "node1", NET);
    plugin["type"] = json!("shibafu-cni");
    let rt = Runtime::new(&lab, "node1", conflist("sfcni", vec![plugin]));
    let (ns, att) = container("cnit");
    let add = rt.add(&att);
    let ip = result_ip(add.expect_ok("ADD with type shibafu-cni"), 0);
    assert!(has_eth0(&ns), "no eth0 after ADD: {}", add.show());
    await_endpoint(&lab, &ip, true);
    rt.check(&att).expect_ok("CHECK with type shibafu-cni");
    rt.del(&att).expect_ok("DEL with type shibafu-cni");
    nothing_attached(&lab, Some(&ns), "after DEL with type shibafu-cni");
    await_endpoint(&lab, &ip, false);
    lab.down();
}
