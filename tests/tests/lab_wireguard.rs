//! Lab tier, the encrypted overlay: containers of an `--encrypted` network on three nodes reach
//! and resolve each other through WireGuard (the userspace backend where the kernel has no
//! module), a capture on the underlay sees no payload and only WireGuard's UDP, the MTU shown is
//! exactly what a DF ping carries, keys survive agent restarts, rotate under a running ping, and
//! a node whose record carries a wrong key gets nothing through.

#[path = "lab_wireguard/underlay.rs"]
mod underlay;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use shibafu_tests::{root_or_skip, text, wait_until, Lab};
use underlay::{Capture, Hosts};

fn lab() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(3);
    lab.cli_ok(
        "node1",
        &[
            "network",
            "create",
            "secure",
            "172.30.0.0/24",
            "--encrypted",
        ],
    );
    for (node, name) in [("node1", "c1"), ("node2", "c2"), ("node3", "c3")] {
        lab.run_idle(node, name, "secure");
    }
    Some(lab)
}

/// `ping ARGS... TARGET` from container `name` on `node`: its output.
fn ping(lab: &Lab, node: &str, name: &str, args: &[&str], target: &str) -> String {
    let mut cmd = vec!["exec", name, "ping"];
    cmd.extend_from_slice(args);
    cmd.push(target);
    text(&lab.cli(node, &cmd).stdout)
}

/// c1 (node1) pings c2 every `interval` seconds, `count` times, while `during` runs (starting
/// a second into the pings); how many of the pings were lost, and ping's output. Fails unless
/// the pings cover `during` whole: it began after the first ping and ended at least a second
/// before the last one.
fn ping_during(lab: &Lab, (interval, count): (&str, u32), during: impl FnOnce()) -> (u64, String) {
    let (out, began, done, ended) = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let count = count.to_string();
            let args = ["-i", interval, "-c", &count, "-W", "1"];
            let out = ping(lab, "node1", "c1", &args, "c2.secure.local");
            (out, Instant::now())
        });
        std::thread::sleep(Duration::from_secs(1));
        let began = Instant::now();
        during();
        let done = Instant::now();
        let (out, ended) = pinger.join().expect("ping");
        (out, began, done, ended)
    });
    // ping's own time (first ping to last reply) placed where ping returned: its start as
    // estimated so is, if anything, late.
    let first = ended - Duration::from_millis(ping_stat(&out, ", time ", "ms"));
    assert!(
        first <= began,
        "the action began {:?} before the first ping:\n{out}",
        first - began
    );
    assert!(
        done + Duration::from_secs(1) <= ended,
        "the action ended less than a second before the last ping ({:?} short): the pings do not cover it:\n{out}",
        (done + Duration::from_secs(1)).saturating_duration_since(ended)
    );
    let received = ping_stat(&out, " transmitted, ", " received");
    (u64::from(count).saturating_sub(received), out)
}

/// The number between `before` and `after` in ping's summary (`80 packets transmitted, 80
/// received, 0% packet loss, time 7953ms`).
fn ping_stat(out: &str, before: &str, after: &str) -> u64 {
    out.split_once(before)
        .and_then(|(_, rest)| rest.split_once(after))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no{before}...{after} in ping's output:\n{out}"))
}

fn reaches(lab: &Lab, node: &str, name: &str, target: &str) -> bool {
    ping(lab, node, name, &["-c", "1", "-W", "1"], target).contains("1 received")
}

/// Every node's key fingerprint, from `node ls --format json`.
fn keys(lab: &Lab) -> Vec<(String, String)> {
    let out = lab.cli_ok("node1", &["node", "ls", "--format", "json"]);
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("json");
    nodes
        .as_array()
        .expect("array")
        .iter()
        .map(|n| {
            let key = n["wireguard"]["key"].as_str().unwrap_or("-").to_string();
            (n["name"].as_str().unwrap_or_default().to_string(), key)
        })
        .collect()
}

/// A container: (node, name).
type At<'a> = (&'a str, &'a str);

/// Sends `marker` over TCP from container `from` to `to` (listening on 7000) on `network`,
/// under a capture of the underlay; whether it arrived, and what the capture saw.
fn send_marker(
    lab: &Lab,
    (from, to): (At<'_>, At<'_>),
    network: &str,
    marker: &str,
) -> (bool, Vec<String>, String) {
    let ((from_node, from), (to_node, to)) = (from, to);
    let cap = Capture::start(lab);
    let received = std::thread::scope(|s| {
        let listener = s.spawn(|| {
            let out = lab.cli(
                to_node,
                &[
                    "exec", to, "timeout", "6", "busybox", "nc", "-l", "-p", "7000",
                ],
            );
            text(&out.stdout)
        });
        std::thread::sleep(Duration::from_millis(700));
        // Again until a connection is taken: on a loaded machine the listener can start late.
        let target = format!("{to}.{network}.local");
        let send = format!(
            "i=0; while [ $i -lt 10 ]; do echo {marker} | busybox nc -w 1 {target} 7000 && break; \
             i=$((i + 1)); sleep 0.3; done"
        );
        lab.cli(from_node, &["exec", from, "sh", "-c", &send]);
        listener.join().expect("listener")
    });
    let (lines, payloads) = cap.finish();
    (received.contains(marker), lines, payloads)
}

#[test]
fn an_encrypted_network_reaches_resolves_and_hides_its_traffic() {
    let Some(lab) = lab() else { return };
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            reaches(&lab, "node1", "c1", "c2.secure.local")
                && reaches(&lab, "node1", "c1", "c3.secure.local")
                && reaches(&lab, "node2", "c2", "c3.secure.local")
        }),
        "containers of the encrypted network do not reach each other: {}",
        lab.cli_ok("node1", &["node", "ls"])
    );
    let status = lab.cli_ok("node1", &["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("wireguard"))
        .unwrap_or_else(|| panic!("no wireguard row:\n{status}"));
    // It names what carries the tunnels: the kernel module, or the userspace program (as its
    // `--version` says) and why not the kernel.
    let userspace = format!(
        "up: userspace ({}); the kernel has no WireGuard module",
        boringtun_version()
    );
    assert!(
        row.contains("up: kernel, ") || row.contains(&userspace),
        "the status does not name the backend (expected `up: kernel` or `{userspace}`): {row}"
    );
    assert!(
        keys(&lab).iter().all(|(_, k)| k.len() == 8),
        "{:?}",
        keys(&lab)
    );

    // The MTU shown is exactly what crosses with DF set; one byte more does not leave.
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.cli_ok("node1", &["network", "inspect", "secure"]))
            .expect("json");
    let mtu = inspect["tunnel_mtu"]["node1"].as_u64().expect("tunnel_mtu");
    assert_eq!(mtu, 1500 - 60 - 50, "{inspect}");
    let fits = (mtu - 28).to_string();
    let over = (mtu - 27).to_string();
    let df = |size: &str| {
        ping(
            &lab,
            "node1",
            "c1",
            &["-c", "2", "-W", "1", "-M", "do", "-s", size],
            "c2.secure.local",
        )
    };
    let ok = df(&fits);
    assert!(ok.contains("2 received"), "{ok}");
    assert!(
        df(&over).contains(" 0 received"),
        "a packet over the MTU left"
    );

    // On the underlay: no payload, and between nodes only WireGuard (every network is
    // encrypted here).
    crosses(
        &lab,
        (("node1", "c1"), ("node2", "c2")),
        "secure",
        "SFMARKER-SECRET-4242",
        Expect::Encrypted(&["node1", "node2", "node3"]),
    );

    // A container cannot send into the tunnels itself (it could forge an encrypted network's
    // VXLAN): a peer's tunnel address is not reachable from it.
    let nodes: serde_json::Value =
        serde_json::from_str(&lab.cli_ok("node1", &["node", "ls", "--format", "json"]))
            .expect("json");
    let tunnel2 = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "node2"))
        .and_then(|n| n["wireguard"]["tunnel"].as_str())
        .expect("node2's tunnel address")
        .to_string();
    let out = ping(&lab, "node1", "c1", &["-c", "2", "-W", "1"], &tunnel2);
    assert!(
        out.contains(" 0 received"),
        "a container reached a tunnel address: {out}"
    );

    // The same capture on an unencrypted network shows the marker, and its VXLAN fails the
    // check above: they can see.
    lab.cli_ok("node1", &["network", "create", "plain", "172.31.0.0/24"]);
    lab.run_idle("node1", "p1", "plain");
    lab.run_idle("node2", "p2", "plain");
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || reaches(&lab, "node1", "p1", "p2.plain.local")
    ));
    crosses(
        &lab,
        (("node1", "p1"), ("node2", "p2")),
        "plain",
        "SFMARKER-CLEAR-4242",
        Expect::Clear,
    );
    lab.down();
}

#[test]
fn keys_survive_restarts_rotate_under_ping_and_a_wrong_key_gets_nothing_through() {
    let Some(lab) = lab() else { return };
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            reaches(&lab, "node1", "c1", "c2.secure.local")
                && reaches(&lab, "node1", "c1", "c3.secure.local")
        }),
        "not reachable: {}",
        lab.cli_ok("node1", &["node", "ls"])
    );
    let key_file = lab.state_dir().join("nodes/node1/wireguard/private.key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());

    // Agent restarts keep the key and lose no packet.
    let before = keys(&lab);
    let (lost, out) = ping_during(&lab, ("0.05", 160), || {
        for node in ["node1", "node2"] {
            lab.lab_ok(&["stop", node]);
            lab.lab_ok(&["start", node]);
        }
    });
    assert_eq!(lost, 0, "packets lost across agent restarts:\n{out}");
    assert!(
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || keys(&lab) == before
        ),
        "keys changed across restarts: {before:?} -> {:?}",
        keys(&lab)
    );

    // A rotation under a running ping loses at most one packet; without NODE, the local node.
    for (on, args) in [
        ("node1", vec!["node", "rotate-key", "node2"]),
        ("node1", vec!["node", "rotate-key"]),
    ] {
        let (lost, out) = ping_during(&lab, ("0.1", 80), || {
            let said = lab.cli_ok(on, &args);
            assert!(said.contains("key rotated"), "{said}");
        });
        assert!(lost <= 1, "a rotation lost more than one packet:\n{out}");
    }
    let after = keys(&lab);
    assert_ne!(after[0].1, before[0].1, "node1's key did not change");
    assert_ne!(after[1].1, before[1].1, "node2's key did not change");
    assert_eq!(after[2].1, before[2].1, "node3's key changed");

    // node3's record now names a key it does not hold: no traffic gets through to or from it,
    // while the others still reach each other.
    let key = "/shibafu/v1/nodes/node3";
    let json = lab.exec_ok("ctl", &["etcdctl", "get", key, "-w", "json"]);
    let got: serde_json::Value = serde_json::from_str(&json).expect("etcd json");
    let kv = &got["kvs"][0];
    let lease = format!("{:x}", kv["lease"].as_i64().expect("lease"));
    let value = base64_decode(kv["value"].as_str().expect("value"));
    let mut node: serde_json::Value = serde_json::from_slice(&value).expect("node json");
    node["wg"]["public_key"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    lab.exec_ok(
        "ctl",
        &[
            "etcdctl",
            "put",
            &format!("--lease={lease}"),
            key,
            &node.to_string(),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(300), || {
            !reaches(&lab, "node1", "c1", "c3.secure.local")
        }),
        "traffic still reaches the node with the wrong key"
    );
    let out = ping(
        &lab,
        "node1",
        "c1",
        &["-c", "3", "-W", "1"],
        "c3.secure.local",
    );
    assert!(out.contains(" 0 received"), "{out}");
    let out = ping(
        &lab,
        "node3",
        "c3",
        &["-c", "3", "-W", "1"],
        "c1.secure.local",
    );
    assert!(out.contains(" 0 received"), "{out}");
    assert!(reaches(&lab, "node1", "c1", "c2.secure.local"));

    // node3's agent stops and its lease ends: node1's device drops its peer, keeps node2's.
    let node3_key = node["wg"]["public_key"].as_str().expect("key").to_string();
    let node2_key = public_key(&lab, "node2");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(300), || {
            let peers = device_peers(&lab, "node1");
            peers.contains(&node3_key) && peers.contains(&node2_key)
        }),
        "node1's device before node3 leaves: {:?}",
        device_peers(&lab, "node1")
    );
    lab.lab_ok(&["stop", "node3"]);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(300), || {
            !device_peers(&lab, "node1").contains(&node3_key)
        }),
        "node1's device still has node3's peer after its lease ended: {:?}",
        device_peers(&lab, "node1")
    );
    assert_eq!(device_peers(&lab, "node1"), [node2_key]);
    assert!(reaches(&lab, "node1", "c1", "c2.secure.local"));
    lab.down();
}

/// Node `node`'s full public key, from `node ls --format json`.
fn public_key(lab: &Lab, node: &str) -> String {
    let out = lab.cli_ok("node1", &["node", "ls", "--format", "json"]);
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("json");
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == node))
        .and_then(|n| n["wireguard"]["public_key"].as_str())
        .unwrap_or_else(|| panic!("no public key of {node} in {out}"))
        .to_string()
}

/// The peers' public keys of `node`'s WireGuard device, as `wg show` reads it (a kernel device
/// by netlink, a userspace one through its socket): the device is the one of the interfaces
/// `wg` knows (every lab's userspace sockets) that is in the node's namespace.
fn device_peers(lab: &Lab, node: &str) -> Vec<String> {
    let links = lab.exec_ok(node, &["ip", "-o", "link", "show"]);
    let known = lab.exec_ok(node, &["wg", "show", "interfaces"]);
    let ifname = known
        .split_whitespace()
        .find(|i| links.contains(&format!(": {i}:")))
        .unwrap_or_else(|| panic!("no WireGuard device on {node}: {links}"));
    let peers = lab.exec_ok(node, &["wg", "show", ifname, "peers"]);
    peers.lines().map(str::to_string).collect()
}

/// `boringtun-cli --version`, what the userspace backend reports itself as.
fn boringtun_version() -> String {
    let out = Command::new("boringtun-cli")
        .arg("--version")
        .output()
        .expect("boringtun-cli --version");
    text(&out.stdout).trim().to_string()
}

/// What the underlay must show of a crossing.
enum Expect<'a> {
    /// The marker in clear, and the check of [`Expect::Encrypted`] failing on the two nodes'
    /// clear traffic (it can fail).
    Clear,
    /// No marker, WireGuard between the two nodes, and nothing but WireGuard between two nodes
    /// of which one is among these (the nodes whose traffic must be encrypted).
    Encrypted(&'a [&'a str]),
}

/// `marker` crosses from one container to the other on `network` (see [`send_marker`]), and
/// the underlay shows what `expect` says.
fn crosses(lab: &Lab, pair: (At<'_>, At<'_>), network: &str, marker: &str, expect: Expect<'_>) {
    let (arrived, lines, payloads) = send_marker(lab, pair, network, marker);
    assert!(
        arrived,
        "{marker} did not cross {network} from {:?} to {:?}",
        pair.0, pair.1
    );
    let hosts = Hosts::of(lab);
    let nodes = (pair.0 .0, pair.1 .0);
    match expect {
        Expect::Clear => {
            assert!(
                payloads.contains(marker),
                "{marker} is not seen in clear on the underlay"
            );
            assert!(
                !hosts.leaks(&lines, &[nodes.0, nodes.1]).is_empty(),
                "the capture check does not see {network}'s clear traffic:\n{}",
                lines.join("\n")
            );
        }
        Expect::Encrypted(encrypted) => {
            assert!(
                !payloads.contains(marker),
                "{marker} is visible on the underlay"
            );
            let leaks = hosts.leaks(&lines, encrypted);
            assert!(
                leaks.is_empty(),
                "{} packets on the underlay that are not WireGuard:\n{}",
                leaks.len(),
                leaks.join("\n")
            );
            assert!(
                hosts.wireguard_between(&lines, nodes) > 0,
                "no WireGuard between {} and {} ({} packets)",
                nodes.0,
                nodes.1,
                lines.len()
            );
        }
    }
}

#[test]
fn encrypt_all_on_one_node_takes_its_traffic_of_every_network_into_the_tunnel() {
    if !root_or_skip("lab") {
        return;
    }
    let lab = Lab::up(3);
    lab.cli_ok("node1", &["network", "create", "plain", "172.31.0.0/24"]);
    // node3's agent again, encrypting everything (the lab passes SHIBAFU_ENCRYPT_ALL on).
    lab.lab_ok(&["stop", "node3"]);
    let mut start = lab.lab_cmd(&["start", "node3"]);
    start.env("SHIBAFU_ENCRYPT_ALL", "1");
    let out = start.output().expect("lab start");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (node, name) in [("node1", "p1"), ("node2", "p2"), ("node3", "p3")] {
        lab.run_idle(node, name, "plain");
    }
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            reaches(&lab, "node1", "p1", "p3.plain.local")
                && reaches(&lab, "node1", "p1", "p2.plain.local")
        }),
        "not reachable: {}",
        lab.cli_ok("node1", &["node", "ls"])
    );
    let nodes = lab.cli_ok("node1", &["node", "ls", "--format", "json"]);
    assert!(nodes.contains("\"encrypt_all\": true"), "{nodes}");
    // To and from node3: inside the tunnel.
    crosses(
        &lab,
        (("node1", "p1"), ("node3", "p3")),
        "plain",
        "SFMARKER-ALL-4242",
        Expect::Encrypted(&["node3"]),
    );
    // Between node1 and node2, which do not ask for it: clear as before.
    crosses(
        &lab,
        (("node1", "p1"), ("node2", "p2")),
        "plain",
        "SFMARKER-N2-4242",
        Expect::Clear,
    );
    lab.down();
}

/// Standard base64 (etcd's JSON output encodes values so).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
