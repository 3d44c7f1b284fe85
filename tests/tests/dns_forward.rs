//! `shibafu-agent dns --forward` as a user sees it, with real `dig` on loopback: answers come
//! from the cache without reaching the upstream again, TTLs count down, the question is echoed
//! as asked, `--forward-zone` routes by the longest suffix, truncated upstream answers are
//! fetched over TCP, and a dead upstream's names are served stale with TTL 30.
//!
//! The upstreams are tiny scripted servers started here (threads answering raw packets); no
//! real resolver is ever asked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shibafu_tests::{bin, exec_out, unique_name, wait_until};

/// A scripted upstream: every A query gets `ip` with `ttl` (over UDP with TC set and no
/// records when `truncate`), counting queries per transport.
struct Upstream {
    addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
struct Script {
    ip: [u8; 4],
    ttl: u32,
    truncate: bool,
}

impl Upstream {
    fn start(script: Script) -> Upstream {
        let (udp_sock, tcp_listener) = bind_pair();
        let addr = udp_sock.local_addr().expect("upstream address");
        let (udp, tcp) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        udp_sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        tcp_listener.set_nonblocking(true).expect("nonblocking");
        let udp_thread = {
            let (count, stop) = (udp.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(SeqCst) {
                    let Ok((n, peer)) = udp_sock.recv_from(&mut buf) else {
                        continue;
                    };
                    count.fetch_add(1, SeqCst);
                    if let Some(resp) = respond(&buf[..n], script, script.truncate) {
                        let _ = udp_sock.send_to(&resp, peer);
                    }
                }
            })
        };
        let tcp_thread = {
            let (count, stop) = (tcp.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    match tcp_listener.accept() {
                        Ok((stream, _)) => serve_tcp(stream, script, &count),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Upstream {
            addr,
            udp,
            tcp,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn udp_queries(&self) -> usize {
        self.udp.load(SeqCst)
    }

    fn tcp_queries(&self) -> usize {
        self.tcp.load(SeqCst)
    }

    /// Stops answering and closes its sockets.
    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve_tcp(mut s: TcpStream, script: Script, count: &AtomicUsize) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut len = [0u8; 2];
    while s.read_exact(&mut len).is_ok() {
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut query).is_err() {
            return;
        }
        count.fetch_add(1, SeqCst);
        let Some(resp) = respond(&query, script, false) else {
            return;
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            return;
        };
        let mut framed = n.to_be_bytes().to_vec();
        framed.extend_from_slice(&resp);
        if s.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Header and question of `query`, then one A record (or TC and nothing when `truncate`).
fn respond(query: &[u8], script: Script, truncate: bool) -> Option<Vec<u8>> {
    let mut pos = 12;
    while *query.get(pos)? != 0 {
        pos += 1 + usize::from(query[pos]);
    }
    let qend = pos + 5;
    let mut r = query.get(..qend)?.to_vec();
    r[2] = 0x84 | (query[2] & 0x01) | if truncate { 0x02 } else { 0 };
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, u8::from(!truncate), 0, 0, 0, 0]);
    if !truncate {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        r.extend_from_slice(&script.ttl.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&script.ip);
    }
    Some(r)
}

fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A `shibafu-agent dns` forwarding server on a free loopback port, killed on drop.
struct Forwarder {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Forwarder {
    fn start(flags: &[String]) -> Forwarder {
        let log = std::env::temp_dir().join(unique_name("sfdnsfwd"));
        let (udp, _) = bind_pair();
        let port = udp.local_addr().expect("free port").port();
        drop(udp);
        let child = Command::new(bin("shibafu-agent"))
            .args(["dns", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--zone", "local.test", "--records", "/dev/null"])
            .args(flags)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start shibafu-agent dns");
        let f = Forwarder {
            child: Some(child),
            port,
            log,
        };
        let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            f.dig(&["local.test", "SOA"]).contains("status: NOERROR")
        });
        assert!(up, "forwarder did not start; log:\n{}", f.log());
        f
    }

    fn dig(&self, args: &[&str]) -> String {
        let out = exec_out(
            Command::new("dig")
                .args(["@127.0.0.1", "-p", &self.port.to_string()])
                .args([
                    "+time=5",
                    "+tries=1",
                    "+noall",
                    "+comments",
                    "+question",
                    "+answer",
                ])
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// (owner, TTL, address) of each A record in dig's answer section.
fn answers(dig: &str) -> Vec<(String, u32, String)> {
    dig.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [owner, ttl, "IN", "A", ip] => {
                    Some((owner.to_string(), ttl.parse().ok()?, ip.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn flag(addr: SocketAddr) -> String {
    addr.to_string()
}

#[test]
fn cached_answers_skip_the_upstream_count_down_and_echo_the_question() {
    let up = Upstream::start(Script {
        ip: [10, 0, 0, 1],
        ttl: 300,
        truncate: false,
    });
    let f = Forwarder::start(&["--forward".into(), flag(up.addr)]);
    let first = f.dig(&["WwW.Example.TEST", "A"]);
    assert!(
        first.contains(";WwW.Example.TEST."),
        "question echoed as asked: {first}"
    );
    assert!(
        first.contains("flags: qr rd ra;"),
        "forwarded answer: RA, not AA: {first}"
    );
    let a = answers(&first);
    assert_eq!(a.len(), 1, "{first}");
    assert_eq!((a[0].1, a[0].2.as_str()), (300, "10.0.0.1"));

    std::thread::sleep(Duration::from_millis(2100));
    for case in ["www.example.test", "WWW.EXAMPLE.TEST"] {
        let again = f.dig(&[case, "A"]);
        let a = answers(&again);
        assert_eq!(a.len(), 1, "{again}");
        assert!(
            (295..=298).contains(&a[0].1),
            "TTL aged by the time in cache: {again}"
        );
        assert!(again.contains(&format!(";{case}.")), "{again}");
    }
    let tcp = f.dig(&["+tcp", "www.example.test", "A"]);
    assert_eq!(answers(&tcp).len(), 1, "{tcp}");
    assert_eq!(
        up.udp_queries(),
        1,
        "only the first query reaches the upstream"
    );
}

#[test]
fn forward_zones_route_by_the_longest_label_wise_suffix() {
    let default = Upstream::start(Script {
        ip: [10, 0, 0, 1],
        ttl: 60,
        truncate: false,
    });
    let corp = Upstream::start(Script {
        ip: [10, 0, 0, 2],
        ttl: 60,
        truncate: false,
    });
    let dev = Upstream::start(Script {
        ip: [10, 0, 0, 3],
        ttl: 60,
        truncate: false,
    });
    let f = Forwarder::start(&[
        "--forward".into(),
        flag(default.addr),
        "--forward-zone".into(),
        format!("corp.example={}", corp.addr),
        "--forward-zone".into(),
        format!("dev.corp.example.={}", dev.addr),
    ]);
    for (name, ip) in [
        ("www.corp.example", "10.0.0.2"),
        ("corp.example", "10.0.0.2"),
        ("api.dev.corp.example", "10.0.0.3"),
        ("xcorp.example", "10.0.0.1"),
        ("elsewhere.test", "10.0.0.1"),
    ] {
        let out = f.dig(&[name, "A"]);
        let a = answers(&out);
        assert_eq!(a.first().map(|r| r.2.as_str()), Some(ip), "{name}: {out}");
    }
    assert_eq!(
        (default.udp_queries(), corp.udp_queries(), dev.udp_queries()),
        (2, 2, 1)
    );
}

#[test]
fn truncated_upstream_answers_are_fetched_over_tcp() {
    let up = Upstream::start(Script {
        ip: [10, 0, 0, 7],
        ttl: 60,
        truncate: true,
    });
    let f = Forwarder::start(&["--forward".into(), flag(up.addr)]);
    let out = f.dig(&["big.example.test", "A"]);
    let a = answers(&out);
    assert_eq!(a.first().map(|r| r.2.as_str()), Some("10.0.0.7"), "{out}");
    assert!(
        !out.contains(" tc"),
        "the client sees a complete answer: {out}"
    );
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 1));
}

#[test]
fn a_dead_upstreams_names_are_served_stale_with_ttl_30() {
    let up = Upstream::start(Script {
        ip: [10, 0, 0, 9],
        ttl: 1,
        truncate: false,
    });
    let f = Forwarder::start(&["--forward".into(), flag(up.addr)]);
    let fresh = f.dig(&["svc.example.test", "A"]);
    assert_eq!(answers(&fresh).first().map(|r| r.1), Some(1), "{fresh}");
    up.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let stale = f.dig(&["svc.example.test", "A"]);
    let a = answers(&stale);
    assert_eq!(
        a.first().map(|r| (r.1, r.2.as_str())),
        Some((30, "10.0.0.9")),
        "{stale}\nlog:\n{}",
        f.log()
    );
    let never_seen = f.dig(&["other.example.test", "A"]);
    assert!(never_seen.contains("status: SERVFAIL"), "{never_seen}");
}
