//! Coordinator and CLI end to end: a real etcd, the real `shibafu-coordinator` binary and the
//! real `shibafu` binary, driven the way a user does (exit codes, stdout, stderr).
//!
//! Needs etcd on PATH and the workspace binaries built (`cargo build --workspace --bins`).
//! Everything listens on 127.0.0.1; every process and directory is removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Directory of the workspace binaries (same rule as the shared harness).
fn bin(name: &str) -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("SHIBAFU_BIN_DIR") {
        PathBuf::from(d)
    } else if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(t).join("debug")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
    };
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!("shibafu-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop; its output goes to a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real etcd on free loopback ports, answering; a start that fails (a port taken between
/// picking and binding it, on a busy machine) is retried on fresh ports.
fn start_etcd(dir: &TempDir) -> (Proc, String) {
    let mut logs = String::new();
    for attempt in 0..3 {
        let (client, peer) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.0.join(format!("etcd{attempt}"));
        let mut etcd = Proc::spawn(
            Command::new("etcd")
                .arg("--name=t")
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=t={peer_url}")),
            dir.0.join(format!("etcd{attempt}.log")),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return (etcd, etcd_url);
            }
            if let Ok(Some(_)) = etcd.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        logs.push_str(&etcd.log());
    }
    panic!("etcd did not start in three tries:\n{logs}");
}

/// A real etcd and one or more coordinators in front of it.
struct Cluster {
    coordinators: Vec<(Proc, String)>,
    etcd_url: String,
    _etcd: Proc,
    dir: TempDir,
}

impl Cluster {
    fn start(coordinators: usize) -> Cluster {
        let dir = TempDir::new("coord");
        let (etcd, etcd_url) = start_etcd(&dir);
        let mut cluster = Cluster {
            coordinators: Vec::new(),
            etcd_url,
            _etcd: etcd,
            dir,
        };
        for i in 0..coordinators {
            let url = format!("http://127.0.0.1:{}", free_port());
            let proc = Proc::spawn(
                Command::new(bin("shibafu-coordinator"))
                    .arg("--listen")
                    .arg(url.trim_start_matches("http://"))
                    .arg("--etcd")
                    .arg(&cluster.etcd_url)
                    .arg("--name")
                    .arg(format!("c{i}"))
                    .arg("--etcd-wait")
                    .arg("30")
                    .env("SHIBAFU_LOG", "debug"),
                cluster.dir.0.join(format!("coordinator{i}.log")),
            );
            cluster.coordinators.push((proc, url));
        }
        for (proc, url) in &cluster.coordinators {
            wait_ready(url, proc);
        }
        cluster
    }

    fn url(&self) -> &str {
        &self.coordinators[0].1
    }

    /// Runs `shibafu --coordinator <first coordinator> ARGS...`.
    fn cli(&self, args: &[&str]) -> Out {
        shibafu(self.url(), args)
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd_url))
            .args(args)
            .output()
            .expect("etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Every key under the shibafu prefix except the guards and the coordinators' own records.
    fn keys(&self) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", "/shibafu/v1/"])
            .lines()
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("/shibafu/v1/guards/")
                    && !l.starts_with("/shibafu/v1/coordinators/")
            })
            .map(str::to_string)
            .collect()
    }
}

/// Output of one CLI run.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn shibafu(coordinator: &str, args: &[&str]) -> Out {
    let out: Output = Command::new(bin("shibafu"))
        .arg("--coordinator")
        .arg(coordinator)
        .args(args)
        .env_remove("SHIBAFU_COORDINATOR")
        .env_remove("SHIBAFU_AGENT")
        .output()
        .expect("run shibafu");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn wait_ready(url: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = shibafu(url, &["node", "ls"]);
        if out.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "coordinator at {url} not ready: {out:?}\nlog:\n{}",
            proc.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[track_caller]
fn ok(out: &Out) -> &str {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    assert_eq!(out.stderr, "", "no stderr on success: {out:?}");
    &out.stdout
}

#[track_caller]
fn fails_with(out: &Out, message: &str) {
    assert_eq!(out.code, 1, "expected exit 1: {out:?}");
    assert_eq!(out.stdout, "", "no stdout on error: {out:?}");
    assert_eq!(out.stderr, format!("error: {message}\n"), "{out:?}");
}

#[test]
fn network_lifecycle_through_the_cli() {
    let c = Cluster::start(1);
    assert_eq!(
        ok(&c.cli(&["network", "ls"])),
        "NAME   SUBNET   GATEWAY   DNS\n"
    );
    for (name, subnet) in [
        ("frontend", "172.21.0.0/24"),
        ("backend", "172.22.0.0/24"),
        ("database", "172.23.0.0/24"),
    ] {
        assert_eq!(
            ok(&c.cli(&["network", "create", name, subnet])),
            format!("{name}\n")
        );
    }
    assert_eq!(
        ok(&c.cli(&["network", "ls"])),
        "\
NAME       SUBNET          GATEWAY      DNS
backend    172.22.0.0/24   172.22.0.1   172.22.0.1
database   172.23.0.0/24   172.23.0.1   172.23.0.1
frontend   172.21.0.0/24   172.21.0.1   172.21.0.1
"
    );
    let json: serde_json::Value =
        serde_json::from_str(ok(&c.cli(&["network", "ls", "--format", "json"]))).expect("json");
    let names: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["backend", "database", "frontend"]);

    let v6 = c.cli(&[
        "network",
        "create",
        "web",
        "10.80.0.0/24",
        "--subnet6",
        "fd00:80::/64",
        "--zone",
        "web.example",
        "--mtu",
        "1400",
        "--internal",
        "--forwarder",
        "127.0.0.1:5300",
    ]);
    assert_eq!(ok(&v6), "web\n");
    let inspect: serde_json::Value =
        serde_json::from_str(ok(&c.cli(&["network", "inspect", "web"]))).expect("inspect json");
    assert_eq!(inspect["subnet"], "10.80.0.0/24");
    assert_eq!(inspect["subnet6"], "fd00:80::/64");
    assert_eq!(inspect["zone"], "web.example");
    assert_eq!(inspect["mtu"], 1400);
    assert_eq!(inspect["internal"], true);
    assert_eq!(inspect["forwarders"], serde_json::json!(["127.0.0.1:5300"]));
    assert_eq!(inspect["vni"], 4099);
    let frontend: serde_json::Value =
        serde_json::from_str(ok(&c.cli(&["network", "inspect", "frontend"]))).expect("json");
    assert_eq!(frontend["zone"], "frontend.local");
    assert_eq!(frontend["vni"], 4096);

    assert_eq!(ok(&c.cli(&["network", "rm", "web"])), "web\n");
    fails_with(
        &c.cli(&["network", "inspect", "web"]),
        r#"no network named "web""#,
    );
    fails_with(
        &c.cli(&["network", "rm", "web"]),
        r#"no network named "web""#,
    );
    assert_eq!(
        c.keys(),
        [
            "/shibafu/v1/networks/backend",
            "/shibafu/v1/networks/database",
            "/shibafu/v1/networks/frontend"
        ]
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let c = Cluster::start(1);
    ok(&c.cli(&[
        "network",
        "create",
        "legacy",
        "172.22.0.0/16",
        "--subnet6",
        "fd00::/48",
    ]));
    let before = c.keys();
    let cases: [(&[&str], &str); 8] = [
        (
            &["network", "create", "x", "172.21.0.0/33"],
            r#"network "x": invalid subnet "172.21.0.0/33": use CIDR notation such as 172.21.0.0/24"#,
        ),
        (
            &["network", "create", "x", "not-a-cidr"],
            r#"network "x": invalid subnet "not-a-cidr": use CIDR notation such as 172.21.0.0/24"#,
        ),
        (
            &["network", "create", "x", "172.21.0.5/24"],
            r#"network "x": subnet 172.21.0.5/24 has host bits set: did you mean 172.21.0.0/24?"#,
        ),
        (
            &["network", "create", "backend", "172.22.0.0/24"],
            r#"network "backend": subnet 172.22.0.0/24 overlaps network "legacy" (172.22.0.0/16)"#,
        ),
        (
            &[
                "network",
                "create",
                "v6",
                "10.9.0.0/24",
                "--subnet6",
                "fd00:0:0:1::/64",
            ],
            r#"network "v6": subnet6 fd00:0:0:1::/64 overlaps network "legacy" (fd00::/48)"#,
        ),
        (
            &["network", "create", "legacy", "10.9.0.0/24"],
            r#"network "legacy" already exists (172.22.0.0/16)"#,
        ),
        (
            &["network", "create", "Bad_Name", "10.9.0.0/24"],
            r#"invalid name "Bad_Name": use 1-63 lowercase letters, digits or '-', not starting or ending with '-'"#,
        ),
        (
            &[
                "network",
                "create",
                "x",
                "10.9.0.0/24",
                "--forwarder",
                "dns.example",
            ],
            r#"network "x": invalid forwarder "dns.example": use IP or IP:PORT (for IPv6 with a port: [IP]:PORT)"#,
        ),
    ];
    for (args, message) in cases {
        fails_with(&c.cli(args), message);
    }
    assert_eq!(c.keys(), before, "a refused request changed etcd");

    // Endpoints attached: refused without --force, removed with it.
    let endpoint = r#"{"schema":1,"id":"node1-api","network":"legacy","name":"api","node":"node1","ipv4":"172.22.0.5","mac":"02:00:00:00:00:05"}"#;
    c.etcdctl(&["put", "/shibafu/v1/endpoints/legacy/node1-api", endpoint]);
    c.etcdctl(&["put", "/shibafu/v1/ipam/legacy/blocks/172.22.0.0_28", "{}"]);
    let with_endpoint = c.keys();
    fails_with(
        &c.cli(&["network", "rm", "legacy"]),
        r#"network "legacy" has 1 endpoint attached (api on node1): detach them first, or remove with --force"#,
    );
    assert_eq!(c.keys(), with_endpoint);
    assert_eq!(
        ok(&c.cli(&["network", "rm", "legacy", "--force"])),
        "legacy\n"
    );
    assert_eq!(c.keys(), Vec::<String>::new());
}

#[test]
fn nodes_env_var_and_unreachable_coordinator() {
    let c = Cluster::start(1);
    assert_eq!(
        ok(&c.cli(&["node", "ls"])),
        "NAME   UNDERLAY   VERSION   AGE   KEY   TUNNELS\n"
    );
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 120;
    let node = format!(
        r#"{{"schema":1,"name":"node1","underlay":"10.99.0.11","version":"0.1.0","started_at":{started}}}"#
    );
    c.etcdctl(&["put", "/shibafu/v1/nodes/node1", &node]);
    let table = ok(&c.cli(&["node", "ls"])).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "NAME    UNDERLAY     VERSION   AGE   KEY   TUNNELS"
    );
    // A node record without a WireGuard key (an older agent) shows `-` for both.
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(
        ["2m", "3m"]
            .iter()
            .any(|age| cells == ["node1", "10.99.0.11", "0.1.0", age, "-", "-"]),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(ok(&c.cli(&["node", "ls", "--format", "json"]))).expect("json");
    assert_eq!(json[0]["underlay"], "10.99.0.11");

    // The address comes from SHIBAFU_COORDINATOR when the flag is absent.
    let out = Command::new(bin("shibafu"))
        .args(["network", "create", "envnet", "10.70.0.0/24"])
        .env("SHIBAFU_COORDINATOR", c.url())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "envnet\n");

    // `status`: the coordinator answers, the (absent) agent does not.
    let dir = TempDir::new("noagent");
    let sock = dir.0.join("agent.sock");
    let status = shibafu(c.url(), &["status", "--agent", &sock.display().to_string()]);
    assert_eq!(status.code, 1, "{status:?}");
    let row = format!("coordinator   {}", c.url());
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with(&row) && l.ends_with("ok (0.1.0)")),
        "{status:?}"
    );
    assert!(
        status.stderr.starts_with(&format!(
            "error: cannot reach agent at unix:{}: ",
            sock.display()
        )),
        "{status:?}"
    );

    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = shibafu(&dead, &["network", "ls"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot reach coordinator at {dead}: ")),
        "{out:?}"
    );
    assert!(
        out.stderr.ends_with(
            "(is shibafu-coordinator running? set --coordinator or SHIBAFU_COORDINATOR)\n"
        ),
        "{out:?}"
    );
    let out = shibafu("10.0.0.1:7480", &["network", "ls"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("use http://HOST:PORT"), "{out:?}");
}

#[test]
fn concurrent_creates_through_two_coordinators() {
    let c = Cluster::start(2);
    let urls: Vec<String> = c.coordinators.iter().map(|(_, u)| u.clone()).collect();
    // Eight creates of one subnet under different names, spread over both coordinators.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let url = urls[i % 2].clone();
            thread::spawn(move || {
                shibafu(
                    &url,
                    &["network", "create", &format!("race{i}"), "10.50.0.0/24"],
                )
            })
        })
        .collect();
    let outs: Vec<Out> = racers
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let winners = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(winners, 1, "exactly one create may win: {outs:?}");
    for o in outs.iter().filter(|o| o.code != 0) {
        assert!(o.stderr.contains("overlaps network \"race"), "{o:?}");
    }
    // Disjoint subnets all succeed, each with its own VNI.
    let builders: Vec<_> = (0..6)
        .map(|i| {
            let url = urls[i % 2].clone();
            thread::spawn(move || {
                shibafu(
                    &url,
                    &[
                        "network",
                        "create",
                        &format!("par{i}"),
                        &format!("10.60.{i}.0/24"),
                    ],
                )
            })
        })
        .collect();
    for t in builders {
        ok(&t.join().expect("thread"));
    }
    let json: serde_json::Value =
        serde_json::from_str(ok(&c.cli(&["network", "ls", "--format", "json"]))).expect("json");
    let mut vnis: Vec<u64> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["vni"].as_u64())
        .collect();
    assert_eq!(vnis.len(), 7);
    vnis.sort_unstable();
    vnis.dedup();
    assert_eq!(vnis.len(), 7, "VNIs must be unique");
}

#[test]
fn coordinator_stops_cleanly_on_sigterm() {
    let mut c = Cluster::start(2);
    ok(&c.cli(&["network", "create", "frontend", "172.21.0.0/24"]));
    let registered = c.etcdctl(&["get", "--prefix", "/shibafu/v1/coordinators/"]);
    for (i, (_, url)) in c.coordinators.iter().enumerate() {
        assert!(
            registered.contains(&format!(r#""name":"c{i}","api":"{url}""#)),
            "{registered}"
        );
    }
    let both = format!("{},{}", c.coordinators[0].1, c.coordinators[1].1);
    let (proc, _) = &mut c.coordinators[0];
    let status = proc.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "coordinator did not exit 0 on SIGTERM: {status:?}\n{}",
        proc.log()
    );
    assert!(proc.log().contains("coordinator stopped"), "{}", proc.log());
    let left = c.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        "/shibafu/v1/coordinators/",
    ]);
    assert_eq!(
        left.trim(),
        "/shibafu/v1/coordinators/c1",
        "c0 deregistered at once"
    );
    // The CLI given both fails over to the one still running.
    let ls = ok(&shibafu(&both, &["network", "ls"])).to_string();
    assert!(ls.contains("frontend"), "{ls}");
}
