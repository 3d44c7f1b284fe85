//! Lab tier, `shibafu-cni` among other CNI plugins and other workloads: chained before the
//! reference meta plugins (portmap, bandwidth, tuning, firewall), side by side with the
//! reference bridge + host-local under the same lifecycle, and a CNI namespace talking by name
//! to a `shibafu run` container on another node.
//!
//! Observed on the same lifecycle, chained before portmap, bandwidth, tuning and firewall
//! (`chained_meta_plugins_and_the_reference_bridge_side_by_side`), shibafu vs bridge +
//! host-local (Debian's containernetworking-plugins 1.1.1):
//! - alike: ADD, CHECK, CHECK with an extra route added by hand, DEL, DEL again all exit 0; a
//!   second ADD fails; the meta plugins chain the same.
//! - second ADD: shibafu code 101 ("already has eth0 attached ... DEL it first"); bridge the
//!   generic 999 ("container veth name provided (eth0) already exists").
//! - CHECK without eth0: shibafu code 102 with `details` listing every missing piece (veth,
//!   address, default route), unless the agent's self-repair (~100 ms after the damage) came
//!   first and the chain's CHECK then fails only where the repair cannot help (bandwidth's
//!   qdisc went with the old veth); bridge 999 "Interface name eth0 not found", always (nothing
//!   repairs it).
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
use shibafu_tests::cni::Runtime;
use shibafu_tests::cni_call::CniCall;
use shibafu_tests::cni_conf::{conflist, shibafu_plugin};
use shibafu_tests::cni_lab::{container, lab_with_net, lifecycle_after, result_ip, NET};
use shibafu_tests::{text, unique_name, wait_until, Lab, NetnsGuard};

const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(20);

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
    let Some(lab) = lab_with_net(2) else { return };
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
        let again = &l.add_again;
        assert!(!again.ok(), "{who}: second ADD succeeded: {}", again.show());
    }
    let gone = &rf.check_link_gone.check;
    assert!(
        !gone.ok(),
        "bridge: CHECK without eth0 passed: {}",
        gone.show()
    );
    sf.add_again.expect_error(101, "shibafu: second ADD");
    sf.check_link_gone
        .expect_seen_or_repaired("shibafu: CHECK without eth0", "create veth");
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
    generic(&rf.check_link_gone.check, "not found");
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
    let Some(lab) = lab_with_net(2) else { return };
    let rt = Runtime::shibafu(&lab, "node1", NET);
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
