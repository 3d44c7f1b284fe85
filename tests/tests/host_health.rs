//! Host tier: the real probes of health checks, run from the test's namespace against real
//! servers in a namespace of the test's own, as the agent runs them from its node's: TCP connect
//! made inside the instance's namespace (closed with a reset, no TIME_WAIT left), HTTP status,
//! a command entered through nsenter (output, exit status, timeout), and the established
//! connections to a port counted from inside the namespace.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use shibafu_overlay::health::{tcp_table, Prober, SystemProber, Target};
use shibafu_overlay::model::Probe;
use shibafu_overlay::netns;
use shibafu_tests::{is_root, wait_until, NetnsGuard};

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping host-tier health test: needs root");
    }
    is_root()
}

/// A process in the namespace, killed on drop (the guard kills the rest).
struct Server(Child);

impl Server {
    fn start(ns: &NetnsGuard, args: &[&str]) -> Server {
        let child = ns
            .cmd(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a server in the namespace");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory for the HTTP server's files, removed on drop (also when the test fails).
struct WwwDir(PathBuf);

impl WwwDir {
    fn new() -> WwwDir {
        let dir = std::env::temp_dir().join(format!("sft-health-www-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("www");
        WwwDir(dir)
    }
}

impl Drop for WwwDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a thread inside the namespace.
fn inside<T: Send + 'static>(ns: &NetnsGuard, f: impl FnOnce() -> T + Send + 'static) -> T {
    netns::run_in(&ns.path(), f).expect("enter the test namespace")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn target(ns: &Path, pid: Option<i32>) -> Target {
    Target {
        name: "inst".into(),
        addr: "127.0.0.1".parse().expect("ip"),
        netns: ns.to_path_buf(),
        pid,
    }
}

/// Whether a socket table (/proc/net/tcp or tcp6) has a listener on `port`.
fn listens(table: &str, port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    table
        .lines()
        .any(|l| l.contains(&hex) && l.contains(" 0A "))
}

/// Whether something listens on `port` in `ns` (busybox listens on `::`, in tcp6).
fn listening(ns: &NetnsGuard, port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        let out = ns.cmd("cat").arg(file).output().expect("cat");
        listens(&String::from_utf8_lossy(&out.stdout), port)
    })
}

#[test]
fn tcp_and_http_checks_against_a_real_server() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("hhttp");
    let www_dir = WwwDir::new();
    let dir = &www_dir.0;
    std::fs::write(dir.join("ready"), "ok\n").expect("file");
    let www = dir.to_string_lossy().into_owned();
    let _httpd = Server::start(&ns, &["busybox", "httpd", "-f", "-p", "8080", "-h", &www]);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            listening(&ns, 8080)
        }),
        "busybox httpd did not listen"
    );
    let path = ns.path();
    // From the test's own namespace: the prober enters the instance's to connect.
    let verdicts = rt().block_on(async move {
        let p = SystemProber::start(shibafu_tests::bin("shibafu-agent")).expect("prober");
        let t = target(&path, None);
        let ms = Duration::from_millis(500);
        let mut v = Vec::new();
        for probe in [
            Probe::Tcp { port: 8080 },
            Probe::Tcp { port: 8081 },
            Probe::Http {
                port: 8080,
                path: "/ready".into(),
            },
            Probe::Http {
                port: 8080,
                path: "/missing".into(),
            },
            Probe::Http {
                port: 8081,
                path: "/".into(),
            },
        ] {
            v.push(p.probe(&t, &probe, ms).await);
        }
        // Paced: busybox httpd forks per connection behind a short accept queue.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let v = p.probe(&t, &Probe::Tcp { port: 8080 }, ms).await;
            assert!(v.passed, "{v:?}");
        }
        v
    });
    let time_wait: usize = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|file| {
            let out = ns.cmd("cat").arg(file).output().expect("cat");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.split_whitespace().nth(3) == Some("06"))
                .count()
        })
        .sum();
    assert!(verdicts[0].passed, "{:?}", verdicts[0]);
    assert!(!verdicts[1].passed);
    assert!(
        verdicts[1].output.contains("127.0.0.1:8081"),
        "{}",
        verdicts[1].output
    );
    assert!(verdicts[2].passed, "{:?}", verdicts[2]);
    assert!(verdicts[2].output.starts_with("HTTP/1.") && verdicts[2].output.contains(" 200"));
    assert!(!verdicts[3].passed);
    assert!(
        verdicts[3].output.contains(" 404"),
        "{}",
        verdicts[3].output
    );
    assert!(!verdicts[4].passed);
    assert_eq!(
        time_wait, 0,
        "checks close with a reset and leave no TIME_WAIT"
    );
}

#[test]
fn command_checks_run_in_the_target_namespaces_with_output_and_timeout() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("hcmd");
    let sleeper = Server::start(&ns, &["sleep", "60"]);
    let pid = i32::try_from(sleeper.0.id()).expect("pid");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || ns
            .pids()
            .contains(&sleeper.0.id())),
        "the target never entered the namespace"
    );
    let path = ns.path();
    let ms = Duration::from_millis(300);
    let cmd = |script: &str| Probe::Cmd {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    };
    let probes = [
        cmd("readlink /proc/self/ns/net"),
        cmd("echo hello; echo oops >&2; exit 3"),
        cmd("exit 4"),
        cmd("sleep 5"),
        cmd(&format!("head -c {} /dev/zero | tr '\\0' x", 10_000)),
    ];
    let (verdicts, slow) = rt().block_on(async move {
        let p = SystemProber::start(shibafu_tests::bin("shibafu-agent")).expect("prober");
        let t = target(&path, Some(pid));
        let mut v = Vec::new();
        let mut slow = Duration::ZERO;
        for probe in &probes {
            let started = Instant::now();
            v.push(p.probe(&t, probe, ms).await);
            slow = slow.max(started.elapsed());
        }
        v.push(p.probe(&target(&path, None), &probes[0], ms).await);
        (v, slow)
    });
    assert!(verdicts[0].passed, "{:?}", verdicts[0]);
    assert_eq!(
        verdicts[0].output.trim(),
        format!(
            "net:[{}]",
            std::fs::metadata(ns.path()).expect("netns").ino()
        ),
        "the command ran in the target's network namespace"
    );
    assert!(!verdicts[1].passed);
    assert!(
        verdicts[1].output.contains("hello") && verdicts[1].output.contains("oops"),
        "stdout and stderr kept: {:?}",
        verdicts[1].output
    );
    assert_eq!(verdicts[2].output, "exit status 4");
    assert!(!verdicts[3].passed);
    assert!(
        verdicts[3].output.starts_with("timed out after 300 ms"),
        "{}",
        verdicts[3].output
    );
    assert!(slow < Duration::from_secs(2), "the timeout held: {slow:?}");
    assert!(verdicts[4].passed);
    assert_eq!(verdicts[4].output.len(), 4096, "output kept to 4 KiB");
    assert!(!verdicts[5].passed, "no PID to enter");
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            !ns.pids().iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.starts_with("sleep\u{0}5"))
            })
        }),
        "the timed-out command was killed"
    );
}

#[test]
fn established_connections_to_a_port_are_counted_inside_the_namespace() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("hconn");
    // One process: a listener on 9000 and 5 clients of it, held open.
    let script = "import socket,time\n\
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('127.0.0.1', 9000)); s.listen(16)\n\
c=[socket.create_connection(('127.0.0.1', 9000)) for _ in range(5)]\n\
a=[s.accept() for _ in range(5)]\n\
time.sleep(60)\n";
    let _held = Server::start(&ns, &["python3", "-c", script]);
    let established = |ns: &NetnsGuard| -> u32 {
        let out = ns.cmd("cat").arg("/proc/net/tcp").output().expect("cat");
        tcp_table::count_established(&String::from_utf8_lossy(&out.stdout), 9000)
    };
    assert!(
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || established(&ns) == 5
        ),
        "the 5 connections did not come up"
    );
    let path: PathBuf = ns.path();
    let (first, again, other) = rt().block_on(async move {
        // Counted from this (the test's) namespace: the prober's thread enters the instance's.
        let p = SystemProber::start(shibafu_tests::bin("shibafu-agent")).expect("prober");
        let first = p.connections(&path, 9000, None).await.expect("count");
        let again = p
            .connections(&path, 9000, Some(first))
            .await
            .expect("again");
        let other = p.connections(&path, 9001, None).await.expect("other port");
        (first, again, other)
    });
    assert_eq!(
        first.connections, 5,
        "server side only: the clients' local ports differ"
    );
    assert_eq!(again.connections, 5);
    assert_eq!(other.connections, 0);
    let missing = rt().block_on(async {
        let p = SystemProber::start(shibafu_tests::bin("shibafu-agent")).expect("prober");
        p.connections(Path::new("/run/netns/sft-none"), 9000, None)
            .await
    });
    assert!(missing.is_err());
}

#[test]
fn reading_proc_net_follows_the_main_thread_so_counts_read_thread_self() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("hself");
    let _srv = Server::start(&ns, &["busybox", "nc", "-ll", "-p", "9100", "-e", "true"]);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            listening(&ns, 9100)
        }),
        "nc did not listen"
    );
    let (thread_self, process) = inside(&ns, || {
        let read = |f: &str| std::fs::read_to_string(f).expect("socket table");
        let own = read("/proc/thread-self/net/tcp6") + &read("/proc/thread-self/net/tcp");
        let main = read("/proc/net/tcp6") + &read("/proc/net/tcp");
        (listens(&own, 9100), listens(&main, 9100))
    });
    assert!(thread_self, "the entered namespace's table");
    assert!(
        !process,
        "/proc/net shows the main thread's namespace, not this one"
    );
}

#[test]
fn a_listener_whose_queue_is_full_fails_the_check_at_its_timeout() {
    if !root() {
        return;
    }
    let ns = NetnsGuard::new("hfull");
    // Listens with the shortest queue and never accepts: once the queue is full, SYNs are
    // dropped and a connect stays pending.
    let script = "import socket,time\n\
s=socket.socket(); s.bind(('127.0.0.1', 9200)); s.listen(0)\n\
time.sleep(60)\n";
    let _srv = Server::start(&ns, &["python3", "-c", script]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            listening(&ns, 9200)
        }),
        "the listener did not come up"
    );
    let path = ns.path();
    let (verdicts, slowest) = rt().block_on(async move {
        let p = SystemProber::start(shibafu_tests::bin("shibafu-agent")).expect("prober");
        let t = target(&path, None);
        let mut v = Vec::new();
        let mut slowest = Duration::ZERO;
        for _ in 0..4 {
            let started = Instant::now();
            v.push(
                p.probe(&t, &Probe::Tcp { port: 9200 }, Duration::from_millis(300))
                    .await,
            );
            slowest = slowest.max(started.elapsed());
        }
        (v, slowest)
    });
    let last = verdicts.last().expect("verdicts");
    assert!(!last.passed, "{verdicts:?}");
    assert_eq!(
        last.output,
        "connect 127.0.0.1:9200: no answer within 300 ms"
    );
    assert!(slowest < Duration::from_millis(800), "{slowest:?}");
}
