//! Lab tier, the encrypted overlay: containers of an `--encrypted` network on three nodes reach
//! and resolve each other through WireGuard (the userspace backend where the kernel has no
//! module), a capture on the underlay sees no payload and only WireGuard's UDP, the MTU shown is
//! exactly what a DF ping carries, keys survive agent restarts, rotate under a running ping, and
//! a node whose record carries a wrong key gets nothing through.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shibafu_tests::{root_or_skip, text, unique_name, wait_until, Lab};

/// The WireGuard port the agents use unless told otherwise.
const WG_PORT: &str = "51820";

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
/// half a second into the pings); ping's output.
fn ping_during(lab: &Lab, (interval, count): (&str, &str), during: impl FnOnce()) -> String {
    std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let args = ["-i", interval, "-c", count, "-W", "1"];
            ping(lab, "node1", "c1", &args, "c2.secure.local")
        });
        std::thread::sleep(Duration::from_millis(500));
        during();
        pinger.join().expect("ping")
    })
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

/// A capture on the lab's switch (its underlay), killed on drop.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(lab: &Lab) -> Capture {
        let file = std::env::temp_dir().join(format!("{}.pcap", unique_name("sfwg")));
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("sf-{}-sw", lab.name())])
            .args(["tcpdump", "-i", "any", "-nn", "-U", "--immediate-mode"])
            .args(["-s", "0", "-c", "20000"])
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(800));
        Capture { child, file }
    }

    /// Stops the capture; (every packet's summary line, the payloads as text).
    fn finish(mut self) -> (Vec<String>, String) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let read = |extra: &[&str]| {
            let out = Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&self.file)
                .args(extra)
                .output()
                .expect("tcpdump -r");
            text(&out.stdout)
        };
        let lines = read(&[]).lines().map(str::to_string).collect();
        (lines, read(&["-A"]))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
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
        let target = format!("{to}.{network}.local");
        let send = format!("echo {marker} | busybox nc -w 1 {target} 7000");
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
    assert!(row.contains("up: "), "{row}");
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

    // On the underlay: no payload, and only WireGuard's UDP.
    crosses(
        &lab,
        (("node1", "c1"), ("node2", "c2")),
        "secure",
        "SFMARKER-SECRET-4242",
        false,
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

    // The same capture on an unencrypted network shows the marker: it can see.
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
        true,
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
    let out = ping_during(&lab, ("0.05", "80"), || {
        for node in ["node1", "node2"] {
            lab.lab_ok(&["stop", node]);
            lab.lab_ok(&["start", node]);
        }
    });
    assert!(
        out.contains("80 received"),
        "packets lost across agent restarts:\n{out}"
    );
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
        let out = ping_during(&lab, ("0.1", "40"), || {
            let said = lab.cli_ok(on, &args);
            assert!(said.contains("key rotated"), "{said}");
        });
        let lost = if out.contains("40 received") {
            0
        } else if out.contains("39 received") {
            1
        } else {
            2
        };
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
    lab.down();
}

/// `marker` crosses from one container to the other on `network` (see [`send_marker`]); the
/// underlay shows it in clear when `clear`, else no payload and only WireGuard's UDP.
fn crosses(lab: &Lab, pair: (At<'_>, At<'_>), network: &str, marker: &str, clear: bool) {
    let (arrived, lines, payloads) = send_marker(lab, pair, network, marker);
    assert!(
        arrived,
        "{marker} did not cross {network} from {:?} to {:?}",
        pair.0, pair.1
    );
    if clear {
        assert!(
            payloads.contains(marker),
            "{marker} is not seen in clear on the underlay"
        );
    } else {
        assert!(
            !payloads.contains(marker),
            "{marker} is visible on the underlay"
        );
        only_wireguard_udp(&lines);
    }
}

/// Every UDP line of a capture is WireGuard's, and there is at least one.
fn only_wireguard_udp(lines: &[String]) {
    let udp: Vec<&String> = lines.iter().filter(|l| l.contains(" UDP")).collect();
    assert!(!udp.is_empty(), "no UDP seen ({} packets)", lines.len());
    for l in &udp {
        assert!(
            l.contains(&format!(".{WG_PORT} >")) && l.contains(&format!(".{WG_PORT}:")),
            "UDP other than WireGuard's on the underlay: {l}"
        );
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
        false,
    );
    // Between node1 and node2, which do not ask for it: clear as before.
    crosses(
        &lab,
        (("node1", "p1"), ("node2", "p2")),
        "plain",
        "SFMARKER-N2-4242",
        true,
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
