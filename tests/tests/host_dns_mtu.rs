//! Host tier: DNS answers are never fragmented (RFC 9715). `shibafu-agent dns` behind a link of
//! MTU 576, asked with real `dig` from another namespace: an answer too large for the link
//! comes back truncated (TC) and whole over TCP, the server's namespace creates no IP fragment,
//! and answers that fit are unchanged.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use shibafu_tests::{bin, exec_out, root_or_skip, text, unique_name, wait_until, NetnsGuard};

/// The server's address on the narrow link.
const SERVER: &str = "10.77.0.1";

/// A `shibafu-agent dns` process in a namespace (once started), killed and its records file
/// removed on drop, also when the test fails before the process starts.
struct Server {
    child: Option<Child>,
    records: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.records);
    }
}

/// `dig` from `client` to the server, one try.
fn dig(client: &NetnsGuard, args: &[&str]) -> String {
    let out = exec_out(
        client
            .cmd("dig")
            .args([&format!("@{SERVER}"), "+time=2", "+tries=1"])
            .args(args),
    );
    text(&out.stdout)
}

/// The `Ip:` counter `field` of `ns`'s /proc/net/snmp.
fn ip_counter(ns: &NetnsGuard, field: &str) -> u64 {
    let snmp = text(&exec_out(ns.cmd("cat").arg("/proc/net/snmp")).stdout);
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    let at = names.split_whitespace().position(|n| n == field);
    at.and_then(|i| values.split_whitespace().nth(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Ip {field} in /proc/net/snmp:\n{snmp}"))
}

#[test]
fn an_answer_larger_than_the_link_is_truncated_never_fragmented() {
    if !root_or_skip("host") {
        return;
    }
    let server_ns = NetnsGuard::new("dnsmtus");
    let client = NetnsGuard::new("dnsmtuc");
    server_ns.ip(&[
        "link",
        "add",
        "v0",
        "mtu",
        "576",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        client.name(),
        "mtu",
        "576",
    ]);
    server_ns.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "v0"]);
    server_ns.ip(&["link", "set", "v0", "up"]);
    client.ip(&["addr", "add", "10.77.0.2/24", "dev", "v1"]);
    client.ip(&["link", "set", "v1", "up"]);

    let mut server = Server {
        child: None,
        records: std::env::temp_dir().join(unique_name("sfdnsmtu")),
    };
    let mut lines: Vec<String> = (1..=60)
        .map(|i| format!("big.test.local A 10.1.0.{i}"))
        .collect();
    lines.push("small.test.local A 10.1.1.1".into());
    std::fs::write(&server.records, lines.join("\n")).expect("write records");
    let child = server_ns
        .cmd(bin("shibafu-agent"))
        .args([
            "dns",
            "--listen",
            &format!("{SERVER}:53"),
            "--zone",
            "test.local",
        ])
        .arg("--records")
        .arg(&server.records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shibafu-agent dns");
    server.child = Some(child);
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        dig(&client, &["+short", "small.test.local"]).trim() == "10.1.1.1"
    });
    assert!(up, "the server did not answer across the link");
    let fragments = ip_counter(&server_ns, "FragCreates");

    // 60 A records with EDNS: ~1,000 bytes, more than the 576-byte link carries in one packet.
    let udp = dig(
        &client,
        &["+bufsize=1232", "+ignore", "big.test.local", "A"],
    );
    assert!(
        udp.contains("flags: qr aa tc") && udp.contains("ANSWER: 0,"),
        "a UDP answer larger than the link comes back truncated: {udp}"
    );
    assert!(
        udp.contains("; EDNS: version: 0"),
        "the truncated answer keeps EDNS: {udp}"
    );
    let retried = dig(&client, &["+bufsize=1232", "big.test.local", "A"]);
    assert!(
        retried.contains("Truncated, retrying in TCP mode") && retried.contains("ANSWER: 60,"),
        "dig gets the whole answer over TCP after the TC: {retried}"
    );
    // An answer that fits the link is sent as before.
    let small = dig(
        &client,
        &["+bufsize=1232", "+ignore", "small.test.local", "A"],
    );
    assert!(
        small.contains("flags: qr aa") && small.contains("ANSWER: 1,"),
        "{small}"
    );
    assert_eq!(
        ip_counter(&server_ns, "FragCreates"),
        fragments,
        "the server's namespace fragmented an answer"
    );
}
