//! `shibafu-agent dns` as a user runs it: real `dig`, `kdig` and `nslookup` over UDP and TCP on
//! loopback, SIGHUP reloads, forwarding to an upstream started here, clean exit on SIGTERM.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shibafu_tests::{bin, exec_ok, exec_out, unique_name, wait_until};

const RECORDS: &str = "\
# test records
test.local A 10.0.0.5
web.test.local. 60 AAAA fd00::5
web.test.local 60 A 10.0.0.6
_http._tcp.web.test.local. SRV 10 5 8080 web.test.local.
alias.test.local CNAME web.test.local. ; an alias
txt.test.local TXT \"hello; world\"
5.0.0.10.in-addr.arpa PTR test.local.
";

/// A `shibafu-agent dns` process on a free loopback port, killed on drop, with its own
/// records file and log in a temporary directory (removed on drop).
struct DnsProc {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl DnsProc {
    fn start(records: &str, extra: &[&str]) -> DnsProc {
        let dir = std::env::temp_dir().join(unique_name("sfdns"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("records"), records).expect("write records");
        let port = free_port();
        let log = std::fs::File::create(dir.join("log")).expect("log file");
        let mut cmd = Command::new(bin("shibafu-agent"));
        cmd.args([
            "dns",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--zone",
            "test.local",
        ])
        .args(["--zone", "10.in-addr.arpa", "--records"])
        .arg(dir.join("records"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        let child = cmd.spawn().expect("start shibafu-agent dns");
        let mut p = DnsProc {
            child: Some(child),
            port,
            dir,
        };
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            p.dig(&["+short", "test.local", "SOA"])
                .contains("ns.test.local.")
        });
        assert!(ready, "server did not answer; log:\n{}", p.log());
        p.exited();
        p
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    /// Panics if the server died.
    fn exited(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("server exited with {status}; log:\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn dig(&self, args: &[&str]) -> String {
        let out = exec_out(
            Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "+time=2",
                    "+tries=1",
                ])
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kdig(&self, args: &[&str]) -> String {
        exec_ok(
            Command::new("kdig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "+time=2",
                    "+retry=0",
                ])
                .args(args),
        )
    }

    fn signal(&self, sig: &str) {
        exec_ok(Command::new("kill").args([sig, &self.pid()]));
    }
}

impl Drop for DnsProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for UDP and TCP");
}

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn dig_answers_every_record_type_over_udp_and_tcp() {
    let p = DnsProc::start(RECORDS, &[]);
    for transport in [&[][..], &["+tcp"][..]] {
        let q = |args: &[&str]| p.dig(&[transport, args].concat());
        assert_eq!(lines(&q(&["+short", "test.local", "A"])), ["10.0.0.5"]);
        assert_eq!(
            lines(&q(&["+short", "WEB.test.LOCAL", "AAAA"])),
            ["fd00::5"]
        );
        assert_eq!(
            lines(&q(&["+short", "alias.test.local", "A"])),
            ["10.0.0.6", "web.test.local."]
        );
        assert_eq!(
            lines(&q(&["+short", "_http._tcp.web.test.local", "SRV"])),
            ["10 5 8080 web.test.local."]
        );
        assert_eq!(
            lines(&q(&["+short", "txt.test.local", "TXT"])),
            ["\"hello; world\""]
        );
        assert_eq!(lines(&q(&["+short", "-x", "10.0.0.5"])), ["test.local."]);
        let nx = q(&["nope.test.local", "A"]);
        assert!(
            nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa rd"),
            "{nx}"
        );
        assert!(
            nx.contains("AUTHORITY: 1"),
            "NXDOMAIN carries the SOA: {nx}"
        );
        let nodata = q(&["test.local", "AAAA"]);
        assert!(
            nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
            "{nodata}"
        );
        let refused = q(&["www.example.org", "A"]);
        assert!(refused.contains("status: REFUSED"), "{refused}");
    }
}

#[test]
fn kdig_and_nslookup_get_the_same_answers() {
    let p = DnsProc::start(RECORDS, &[]);
    assert_eq!(lines(&p.kdig(&["+short", "test.local", "A"])), ["10.0.0.5"]);
    assert_eq!(
        lines(&p.kdig(&["+tcp", "+short", "web.test.local", "AAAA"])),
        ["fd00::5"]
    );
    let nx = p.kdig(&["+tcp", "nope.test.local", "A"]);
    assert!(nx.contains("NXDOMAIN"), "{nx}");
    let ns = exec_out(Command::new("nslookup").args([
        &format!("-port={}", p.port),
        "test.local",
        "127.0.0.1",
    ]));
    let text = String::from_utf8_lossy(&ns.stdout);
    assert!(text.contains("Address: 10.0.0.5"), "{text}");
}

#[test]
fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let mut records = String::from(RECORDS);
    for i in 0..100 {
        records.push_str(&format!("many.test.local A 10.1.0.{i}\n"));
    }
    let p = DnsProc::start(&records, &[]);
    let udp = p.dig(&["+ignore", "+noedns", "many.test.local", "A"]);
    assert!(udp.contains("flags: qr aa tc rd"), "{udp}");
    assert_eq!(
        lines(&p.dig(&["+short", "many.test.local", "A"])).len(),
        100,
        "dig retries over TCP"
    );
    assert_eq!(
        lines(&p.kdig(&["+tcp", "+short", "many.test.local", "A"])).len(),
        100
    );
}

#[test]
fn sighup_reloads_the_file_and_keeps_the_old_records_when_it_is_bad() {
    let mut p = DnsProc::start(RECORDS, &[]);
    let path = p.dir.join("records");
    std::fs::write(&path, format!("{RECORDS}new.test.local A 10.0.0.9\n"))
        .expect("write the test files");
    p.signal("-HUP");
    let reloaded = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        lines(&p.dig(&["+short", "new.test.local", "A"])) == ["10.0.0.9"]
    });
    assert!(
        reloaded,
        "new record not served after SIGHUP; log:\n{}",
        p.log()
    );
    std::fs::write(&path, "new.test.local A not-an-address\n").expect("write the test files");
    p.signal("-HUP");
    let logged = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        p.log().contains("reload failed")
    });
    assert!(logged, "no reload error logged:\n{}", p.log());
    assert!(
        p.log().contains("records:1"),
        "the error names file and line:\n{}",
        p.log()
    );
    assert_eq!(
        lines(&p.dig(&["+short", "new.test.local", "A"])),
        ["10.0.0.9"]
    );
    p.exited();
}

#[test]
fn names_outside_the_zones_go_to_the_upstream_with_ra_set() {
    let upstream_dir = std::env::temp_dir().join(unique_name("sfup"));
    std::fs::create_dir_all(&upstream_dir).expect("write the test files");
    std::fs::write(upstream_dir.join("r"), "www.example.org A 192.0.2.7\n")
        .expect("write the test files");
    let up_port = free_port();
    let mut upstream = Command::new(bin("shibafu-agent"))
        .args([
            "dns",
            "--listen",
            &format!("127.0.0.1:{up_port}"),
            "--zone",
            "example.org",
        ])
        .arg("--records")
        .arg(upstream_dir.join("r"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the upstream");
    let guard = UpstreamGuard(&mut upstream, upstream_dir);
    let fwd = format!("127.0.0.1:{up_port}");
    let p = DnsProc::start(RECORDS, &["--forward", &fwd]);
    let answered = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        lines(&p.dig(&["+short", "www.example.org", "A"])) == ["192.0.2.7"]
    });
    assert!(answered, "forwarded name not answered; log:\n{}", p.log());
    let full = p.dig(&["www.example.org", "A"]);
    assert!(
        full.contains("flags: qr rd ra"),
        "forwarded answers are not authoritative: {full}"
    );
    let local = p.dig(&["test.local", "A"]);
    assert!(
        local.contains("flags: qr aa rd ra"),
        "RA is set when forwarding: {local}"
    );
    let tcp = p.kdig(&["+tcp", "+short", "www.example.org", "A"]);
    assert_eq!(lines(&tcp), ["192.0.2.7"]);
    drop(guard);
}

struct UpstreamGuard<'a>(&'a mut Child, PathBuf);

impl Drop for UpstreamGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut p = DnsProc::start(RECORDS, &[]);
    p.signal("-TERM");
    let mut child = p.child.take().expect("running");
    let exited = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    assert!(
        exited && status.success(),
        "exit status {status}; log:\n{}",
        p.log()
    );
    assert!(p.log().contains("DNS server stopped"), "{}", p.log());
}
