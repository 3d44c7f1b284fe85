//! Lab tier, the CNI plugin `shibafu-cni` driven the way a container runtime (libcni) drives
//! it: ADD/CHECK/DEL of one attachment with hand-made damage in between, GC against the
//! runtime's list of valid attachments, STATUS while etcd is down, every error code bad input
//! can trigger, chaining with the reference meta plugins (portmap, bandwidth, tuning, firewall)
//! side by side with the reference bridge + host-local, and a CNI namespace talking by name to a
//! `shibafu run` container on another node.
//!
//! Observed on the same lifecycle, chained before portmap, bandwidth, tuning and firewall
//! (`chained_meta_plugins_and_the_reference_bridge_side_by_side`), shibafu vs bridge +
//! host-local (Debian's containernetworking-plugins 1.1.1):
//! - alike: ADD, CHECK, CHECK with an extra route added by hand, DEL, DEL again all exit 0; a
//!   second ADD and a CHECK after `ip link del eth0` both fail; the meta plugins chain the same.
//! - second ADD: shibafu code 101 ("already has eth0 attached ... DEL it first"); bridge the
//!   generic 999 ("container veth name provided (eth0) already exists").
//! - CHECK without eth0: shibafu code 102 with `details` listing every missing piece (veth,
//!   address, default route); bridge 999 "Interface name eth0 not found".
//! - error JSON: shibafu's carries `cniVersion`; the reference plugins' has only code and msg.
//! - result: shibafu fills `dns` (gateway as nameserver, zone as domain and search) and gives
//!   routes an explicit `gw`; bridge leaves `dns` empty and the route without `gw`. shibafu's
//!   host veth has no `mac` (bridge's has); shibafu's container MAC derives from the address
//!   (02:42:ac:18:00:02), bridge's is random.
//! - both need a workaround for portmap 1.1.1, whose CHECK looks for its chain in ip6tables
//!   too and fails for an IPv4-only container (containernetworking/plugins#819): portmap runs
//!   with a PATH without ip6tables ([`Runtime::without_ip6tables`]).

use std::time::Duration;

use serde_json::{json, Value};
use shibafu_tests::cni::{
    agent_socket, cni_entries, cni_ids, conflist, endpoints, lifecycle_after, result_gateway,
    result_ip, shibafu_plugin, Attachment, CniCall, Runtime,
};
use shibafu_tests::{root_or_skip, text, unique_name, wait_until, Lab, NetnsGuard};

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(20);
const NET: &str = "cninet";

fn lab() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(2);
    lab.cli_ok("node1", &["network", "create", NET, "172.24.0.0/24"]);
    Some(lab)
}

/// A runtime with shibafu alone on NETWORK via NODE's agent.
fn shibafu(lab: &Lab, node: &str, network: &str) -> Runtime {
    let list = conflist("sf", vec![shibafu_plugin(lab, node, network)]);
    Runtime::new(lab, node, list)
}

/// A fresh container namespace and its attachment (eth0, a 64-hex-digit id).
fn container(tag: &str) -> (NetnsGuard, Attachment) {
    let ns = NetnsGuard::new(tag);
    let att = Attachment::of(&ns);
    (ns, att)
}

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
    let Some(lab) = lab() else { return };
    let rt = shibafu(&lab, "node1", NET);
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
    l.check_link_gone.expect_error(102, "CHECK without eth0");
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
    let rt6 = shibafu(&lab, "node1", "cni6");
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
    let Some(lab) = lab() else { return };
    let rt = shibafu(&lab, "node1", NET);
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
    let Some(lab) = lab() else { return };
    let rt = shibafu(&lab, "node1", NET);
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
    let Some(lab) = lab() else { return };
    let rt = shibafu(&lab, "node1", NET);
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

/// `main` followed by the meta plugins a runtime with port mappings would chain.
fn chain(name: &str, main: Value) -> Value {
    let plugins = vec![
        main,
        json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        json!({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 65536,
            "egressRate": 8_000_000, "egressBurst": 65536}),
        json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}),
        json!({"type": "firewall", "backend": "iptables"}),
    ];
    conflist(name, plugins)
}

#[test]
fn chained_meta_plugins_and_the_reference_bridge_side_by_side() {
    let Some(lab) = lab() else { return };
    let ipam = std::env::temp_dir().join(unique_name("sf-hostlocal"));
    let _ipam = DirGuard(ipam.clone());
    let bridge = json!({"type": "bridge", "bridge": "cnitest0", "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": ipam, "routes": [{"dst": "0.0.0.0/0"}],
            "ranges": [[{"subnet": "10.99.0.0/24"}]]}});
    let ports = json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]);
    // shibafu on node1, the reference bridge on node2: each in its own host namespace.
    let run = |node: &str, list: Value| {
        let rt = Runtime::new(&lab, node, list).without_ip6tables("portmap");
        let (ns, mut att) = container("cnif");
        att.capability_args
            .insert("portMappings".into(), ports.clone());
        let add = rt.add(&att);
        lifecycle_after(&rt, &att, &ns, add)
    };
    let sf = run(
        "node1",
        chain("sfchain", shibafu_plugin(&lab, "node1", NET)),
    );
    let rf = run("node2", chain("refchain", bridge));
    for (who, l) in [("shibafu", &sf), ("bridge", &rf)] {
        l.check.expect_ok(&format!("{who}: CHECK of the chain"));
        l.check_extra_route
            .expect_ok(&format!("{who}: CHECK with an extra route"));
        l.del.expect_ok(&format!("{who}: DEL of the chain"));
        l.del_again.expect_ok(&format!("{who}: DEL again"));
        let (again, gone) = (&l.add_again, &l.check_link_gone);
        assert!(!again.ok(), "{who}: second ADD succeeded: {}", again.show());
        assert!(
            !gone.ok(),
            "{who}: CHECK without eth0 passed: {}",
            gone.show()
        );
    }
    sf.add_again.expect_error(101, "shibafu: second ADD");
    sf.check_link_gone
        .expect_error(102, "shibafu: CHECK without eth0");
    // bridge 1.1.1: the generic code 999 for both (see the top of the file).
    let generic = |c: &CniCall, says: &str| {
        let msg = c.json["msg"].as_str().unwrap_or_default();
        assert!(
            c.code() == Some(999) && msg.contains(says),
            "bridge: {}",
            c.show()
        );
    };
    generic(&rf.add_again, "already exists");
    generic(&rf.check_link_gone, "not found");
    // Only shibafu's result names a nameserver and a domain.
    assert_eq!(
        sf.add.json["dns"]["domain"],
        "cninet.local",
        "{}",
        sf.add.show()
    );
    assert!(
        rf.add.json["dns"]["nameservers"].is_null(),
        "{}",
        rf.add.show()
    );
    lab.down();
}

/// Removes a directory on drop.
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dig +short NAME` (one try) inside the CNI namespace `ns` against `server`, or inside the
/// run container `box` on node2 with its own resolver.
fn dig(lab: &Lab, ns: Option<(&NetnsGuard, &str)>, name: &str) -> String {
    let args = ["+short", "+tries=1", "+time=2", name];
    let out = match ns {
        Some((ns, server)) => ns
            .cmd("dig")
            .arg(format!("@{server}"))
            .args(args)
            .output()
            .ok(),
        None => Some(lab.cli("node2", &[&["exec", "box", "dig"][..], &args].concat())),
    };
    out.map(|o| text(&o.stdout) + &text(&o.stderr))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_cni_namespace_and_a_run_container_on_another_node_reach_each_other_by_name() {
    let Some(lab) = lab() else { return };
    let rt = shibafu(&lab, "node1", NET);
    let (ns, att) = container("cnig");
    let att = att
        .arg("K8S_POD_NAMESPACE", "default")
        .arg("K8S_POD_NAME", "cnipod");
    let r = rt.add(&att).expect_ok("ADD cnipod").clone();
    let (ip, server) = (
        result_ip(&r, 0),
        r["dns"]["nameservers"][0].as_str().unwrap_or_default(),
    );
    lab.run_idle("node2", "box", NET);
    let info = lab
        .agent_get("node2", "/v1/containers/box")
        .expect("box on node2");
    let box_ip = info["interfaces"][0]["ipv4"].as_str().unwrap_or_default();
    let mut last = String::new();
    let mut resolves = |ns: Option<(&NetnsGuard, &str)>, name: &str, want: &str| {
        wait_until(SETTLE, POLL, || {
            last = dig(&lab, ns, name);
            last == want
        })
    };
    let ok = resolves(Some((&ns, server)), "box.cninet.local", box_ip);
    assert!(
        ok,
        "box.cninet.local from cnipod via {server}: {last:?}, want {box_ip}"
    );
    let ok = resolves(None, "cnipod.cninet.local", &ip);
    assert!(ok, "cnipod.cninet.local from box: {last:?}, want {ip}");
    let ping = |ns: &NetnsGuard| ns.cmd("ping").args(["-c1", "-W1", box_ip]).output();
    let pinged = wait_until(SETTLE, POLL, || ping(&ns).is_ok_and(|o| o.status.success()));
    assert!(pinged, "cnipod ({ip}) cannot ping box ({box_ip})");
    let out = lab.cli(
        "node2",
        &["exec", "box", "ping", "-c1", "-W2", "cnipod.cninet.local"],
    );
    assert!(
        out.status.success(),
        "box -> cnipod: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    rt.del(&att).expect_ok("DEL cnipod");
    let ok = resolves(None, "cnipod.cninet.local", "");
    assert!(ok, "cnipod still resolves after DEL: {last:?}");
    lab.down();
}
