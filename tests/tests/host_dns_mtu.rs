//! Host tier: DNS answers are never fragmented (RFC 9715). `shibafu-agent dns` behind a link of
//! MTU 576, asked with real `dig` from another namespace: an answer too large for the link
//! comes back truncated (TC) and whole over TCP, the server's namespace creates no IP fragment,
//! and answers that fit are unchanged. A burst of queries from one socket, answered in
//! segmented sends, arrives across the link answer by answer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shibafu_tests::prometheus;
use shibafu_tests::{bin, exec_out, root_or_skip, text, unique_name, wait_until, NetnsGuard};

/// The server's addresses on the narrow link.
const SERVER: &str = "10.77.0.1";
const SERVER6: &str = "fd77::1";
/// Its metrics port on that address.
const METRICS: u16 = 9153;

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

/// The server (dropped first), its namespace and the client's, joined by a 576-byte link (and
/// a 1280-byte one for IPv6).
struct Link {
    server: Server,
    server_ns: NetnsGuard,
    client: NetnsGuard,
}

/// Starts `shibafu-agent dns` (metrics on) behind the narrow link and waits for its answers.
fn narrow_link() -> Link {
    let server_ns = NetnsGuard::new("dnsmtus");
    let client = NetnsGuard::new("dnsmtuc");
    // v0/v1 at 576 bytes for IPv4; w0/w1 at IPv6's minimum of 1280 (IPv6 is off below it).
    for (dev, peer, mtu) in [("v0", "v1", "576"), ("w0", "w1", "1280")] {
        server_ns.ip(&[
            "link", "add", dev, "mtu", mtu, "type", "veth", "peer", "name", peer,
        ]);
        server_ns.ip(&["link", "set", peer, "netns", client.name()]);
        client.ip(&["link", "set", peer, "mtu", mtu, "up"]);
        server_ns.ip(&["link", "set", dev, "up"]);
    }
    server_ns.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "v0"]);
    server_ns.ip(&[
        "addr",
        "add",
        &format!("{SERVER6}/64"),
        "dev",
        "w0",
        "nodad",
    ]);
    client.ip(&["addr", "add", "10.77.0.2/24", "dev", "v1"]);
    client.ip(&["addr", "add", "fd77::2/64", "dev", "w1", "nodad"]);

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
            "--listen",
            &format!("[{SERVER6}]:53"),
            "--zone",
            "test.local",
            "--metrics-listen",
            &format!("{SERVER}:{METRICS}"),
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
    Link {
        server,
        server_ns,
        client,
    }
}

#[test]
fn an_answer_larger_than_the_link_is_truncated_never_fragmented() {
    if !root_or_skip("host") {
        return;
    }
    // Bound in this order so the server is dropped (killed) before the namespaces.
    let Link {
        client,
        server_ns,
        server: _server,
    } = narrow_link();
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

/// Sends SIGSTOP or SIGCONT to the server.
fn signal(server: &Server, sig: &str) {
    let pid = server.child.as_ref().map(Child::id).expect("started");
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Sends 40 queries from one client socket to `to` while the server is stopped (it then reads
/// them as one batch: two sizes of answer to one requester, two segmented sends of 20), and
/// checks each is answered by its own datagram.
fn burst_while_stopped(link: &Link, to: &str) {
    signal(&link.server, "-STOP");
    let burst = link
        .client
        .cmd(bin("shibafu-probe"))
        .args(["burst", "--to", to, "--count", "40", "--timeout-ms", "5000"])
        .args(["small.test.local", "nope.test.local"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shibafu-probe burst");
    std::thread::sleep(Duration::from_millis(500));
    signal(&link.server, "-CONT");
    let out = burst.wait_with_output().expect("burst finishes");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let mut ids = Vec::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id: u16 = f[0].parse().expect("an ID");
        let want = if id % 2 == 0 { "0 1 10.1.1.1" } else { "3 0 -" };
        assert_eq!(f[1..].join(" "), want, "answer {id} over {to}");
        ids.push(id);
    }
    ids.sort_unstable();
    let all: Vec<u16> = (0..40).collect();
    assert_eq!(ids, all, "one datagram per answer over {to}: {stdout}");
}

#[test]
fn a_burst_from_one_socket_is_answered_answer_by_answer_across_the_link() {
    if !root_or_skip("host") {
        return;
    }
    let link = narrow_link();
    let url = format!("http://{SERVER}:{METRICS}/metrics");
    let coalesced = || {
        let out = exec_out(link.client.cmd("curl").args(["-sf", &url]));
        let parsed = prometheus::parse(&text(&out.stdout)).expect("metrics parse");
        parsed.sum("shibafu_dns_coalesced_responses_total", &[])
    };
    for (to, total) in [
        (format!("{SERVER}:53"), 40.0),
        (format!("[{SERVER6}]:53"), 80.0),
    ] {
        burst_while_stopped(&link, &to);
        let sent = wait_until(Duration::from_secs(3), Duration::from_millis(100), || {
            coalesced() == total
        });
        assert!(
            sent,
            "{total} answers in segmented sends after {to}: {}",
            coalesced()
        );
    }
}
