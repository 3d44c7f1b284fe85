//! Lab tier, services: instances (busybox httpd) on three nodes behind one name, reached by
//! real clients (curl, glibc's resolver) from a fourth container; weights change the shares;
//! SRV names every instance with its address; bad specs are refused and leave nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use shibafu_tests::{root_or_skip, text, unique_name, wait_until, Lab};

/// Web roots of the instances, on the shared filesystem; removed on drop.
struct Roots(PathBuf);

impl Roots {
    fn new() -> Roots {
        let dir = std::env::temp_dir().join(unique_name("sf-web"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        Roots(dir)
    }

    /// A web root answering `name` for `/`.
    fn of(&self, name: &str) -> String {
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("index.html"), format!("{name}\n")).expect("index");
        d.display().to_string()
    }
}

impl Drop for Roots {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lab() -> Option<Lab> {
    if !root_or_skip("lab") {
        return None;
    }
    let lab = Lab::up(3);
    lab.cli_ok("node1", &["network", "create", "frontend", "172.21.0.0/24"]);
    Some(lab)
}

/// Starts instance NAME of service web on NODE, serving its own name over HTTP on port 80.
fn web(lab: &Lab, roots: &Roots, node: &str, name: &str, extra: &[&str]) {
    let root = roots.of(name);
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "frontend",
        "--service",
        "web",
        "--port",
        "80",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "busybox", "httpd", "-f", "-p", "80", "-h", &root]);
    let out = lab.cli(node, &args);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
}

/// `n` HTTP requests to web.frontend.local from the client container, each a new curl (a new
/// lookup through glibc): how many each instance answered.
fn spread(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let script = format!(
        "for i in $(seq {n}); do curl -s --max-time 2 http://web.frontend.local/ || echo failed; done"
    );
    let out = lab.cli("node2", &["exec", "client", "sh", "-c", &script]);
    let mut counts = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        *counts.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

fn client(lab: &Lab) {
    let out = lab.cli(
        "node2",
        &[
            "run",
            "-d",
            "--name",
            "client",
            "--network",
            "frontend",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(out.status.success(), "client: {}", text(&out.stderr));
}

#[test]
fn requests_by_name_reach_every_instance_and_weights_change_the_shares() {
    let Some(lab) = lab() else { return };
    let roots = Roots::new();
    web(&lab, &roots, "node1", "web1", &[]);
    web(&lab, &roots, "node2", "web2", &[]);
    web(&lab, &roots, "node3", "web3", &[]);
    client(&lab);
    let counts = spread(&lab, 30);
    // Every instance answers, about a third each: the rotation is exact per query, but a client
    // resolver may send a stray extra query (a retry), which shifts the turn by one.
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");
    for w in ["web1", "web2", "web3"] {
        let n = counts.get(w).copied().unwrap_or(0);
        assert!((7..=13).contains(&n), "30 requests by name: {counts:?}");
    }
    // SRV lists every instance with its address; the port is named as in /etc/services.
    let srv = lab.cli(
        "node2",
        &[
            "exec",
            "client",
            "dig",
            "+tries=1",
            "+time=2",
            "SRV",
            "_http._tcp.web.frontend.local",
        ],
    );
    let srv = text(&srv.stdout);
    let lines: Vec<Vec<&str>> = srv
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for w in ["web1", "web2", "web3"] {
        let target = format!("{w}.frontend.local.");
        let listed = lines
            .iter()
            .any(|l| l.len() == 8 && l[3] == "SRV" && l[4..] == ["10", "1", "80", &target]);
        assert!(listed, "{w} is not in SRV: {srv}");
        let glue = lines
            .iter()
            .any(|l| l.len() == 5 && l[0] == target && l[3] == "A");
        assert!(glue, "no address for {w} in the additional section: {srv}");
    }
    // A weighted service: web1 weighs 3, the others 1.
    lab.cli_ok("node1", &["service", "update", "web", "--lb", "weighted"]);
    lab.cli("node1", &["rm", "-f", "web1"]);
    web(&lab, &roots, "node1", "web1", &["--weight", "3"]);
    let counts = spread(&lab, 50);
    let web1 = counts.get("web1").copied().unwrap_or(0);
    assert!(
        (27..=33).contains(&web1),
        "web1 (3 of 5) got {web1} of 50: {counts:?}"
    );
    let ls = lab.cli_ok("node1", &["service", "ls"]);
    assert!(
        ls.contains("web    frontend   weighted   80/tcp   3           3"),
        "{ls}"
    );
    lab.down();
}

#[test]
fn bad_service_specs_are_refused_and_leave_nothing() {
    let Some(lab) = lab() else { return };
    let keys = || {
        lab.exec_ok(
            "node1",
            &[
                "etcdctl",
                "get",
                "--prefix",
                "--keys-only",
                "/shibafu/v1/services/",
            ],
        )
    };
    let before = keys();
    let create = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["service", "create", "web", "--network", "frontend"];
        args.extend_from_slice(extra);
        args
    };
    for (args, says) in [
        (create(&["--port", "0"]), "1-65535"),
        (create(&["--port", "70000"]), "1-65535"),
        (create(&["--lb", "random"]), "random"),
        (
            create(&["--health-tcp", "80", "--health-interval", "5x"]),
            "ms, s or m",
        ),
        (create(&["--health-http", "80healthz"]), "PORT/PATH"),
        (
            create(&["--health-tcp", "80", "--health-interval", "50ms"]),
            "100 ms",
        ),
        (
            vec!["service", "create", "web", "--network", "nope"],
            "no network",
        ),
        (
            vec![
                "run",
                "-d",
                "--name",
                "w0",
                "--network",
                "frontend",
                "--service",
                "web",
                "--weight",
                "0",
                "--",
                "sleep",
                "1",
            ],
            "weight 0",
        ),
    ] {
        let out = lab.cli("node1", &args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(keys(), before, "a refused spec left a service behind");
    let ps = lab.cli_ok("node1", &["ps", "-a"]);
    assert!(!ps.contains("w0"), "a refused run left a container: {ps}");
    lab.down();
}

/// Starts instance NAME of service web on NODE with a server that can be stopped without
/// stopping the container: `busybox httpd` in a loop that skips it while `<root>.stop` exists.
fn stoppable_web(lab: &Lab, roots: &Roots, node: &str, name: &str) -> String {
    let root = roots.of(name);
    let script = format!(
        "while :; do [ -e {root}.stop ] || busybox httpd -f -p 80 -h {root}; sleep 0.05; done"
    );
    let out = lab.cli(
        node,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "frontend",
            "--service",
            "web",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    root
}

fn stop_server(lab: &Lab, node: &str, name: &str, root: &str) {
    std::fs::write(format!("{root}.stop"), "").expect("flag");
    lab.cli(node, &["exec", name, "pkill", "-f", "^busybox httpd"]);
}

fn start_server(root: &str) {
    let _ = std::fs::remove_file(format!("{root}.stop"));
}

/// The instances `_http._tcp.web.frontend.local` lists, asked of NODE's DNS from inside it.
fn srv_on(lab: &Lab, node: &str) -> Vec<String> {
    let out = lab.exec(
        node,
        &[
            "dig",
            "+short",
            "+tries=1",
            "+time=1",
            "@172.21.0.1",
            "SRV",
            "_http._tcp.web.frontend.local",
        ],
    );
    let mut names: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .map(|t| t.trim_end_matches(".frontend.local.").to_string())
        .collect();
    names.sort();
    names
}

fn everywhere(lab: &Lab, want: &[&str]) -> bool {
    ["node1", "node2", "node3"]
        .iter()
        .all(|n| srv_on(lab, n) == want)
}

#[test]
fn health_checks_remove_and_restore_instances_everywhere_and_steer_the_policies() {
    let Some(lab) = lab() else { return };
    let roots = Roots::new();
    lab.cli_ok(
        "node1",
        &[
            "service",
            "create",
            "web",
            "--network",
            "frontend",
            "--port",
            "80",
            "--health-http",
            "80/",
            "--health-interval",
            "200ms",
            "--health-fall",
            "2",
            "--health-rise",
            "2",
        ],
    );
    let r1 = stoppable_web(&lab, &roots, "node1", "web1");
    let r2 = stoppable_web(&lab, &roots, "node2", "web2");
    let r3 = stoppable_web(&lab, &roots, "node3", "web3");
    client(&lab);
    let all = ["web1", "web2", "web3"];
    let settle = Duration::from_secs(15);
    let poll = Duration::from_millis(100);
    assert!(
        wait_until(settle, poll, || everywhere(&lab, &all)),
        "{:?}",
        srv_on(&lab, "node1")
    );
    // A failing check removes web2 from every node's answers; recovery brings it back.
    stop_server(&lab, "node2", "web2", &r2);
    assert!(
        wait_until(settle, poll, || everywhere(&lab, &["web1", "web3"])),
        "web2 is still answered: {:?}",
        srv_on(&lab, "node3")
    );
    let counts = spread(&lab, 10);
    assert_eq!(counts.get("web2"), None, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 10, "{counts:?}");
    let inspect = lab.cli_ok("node1", &["service", "inspect", "web"]);
    assert!(inspect.contains("unhealthy (not answered)"), "{inspect}");
    start_server(&r2);
    assert!(
        wait_until(settle, poll, || everywhere(&lab, &all)),
        "web2 did not come back"
    );

    // No healthy instance: fail-closed answers no address, fail-open every running one.
    for (name, root, node) in [
        ("web1", &r1, "node1"),
        ("web2", &r2, "node2"),
        ("web3", &r3, "node3"),
    ] {
        stop_server(&lab, node, name, root);
    }
    let none = || {
        let out = lab.cli(
            "node2",
            &["exec", "client", "dig", "+short", "web.frontend.local"],
        );
        text(&out.stdout).trim().is_empty()
    };
    assert!(wait_until(settle, poll, none), "fail-closed still answers");
    let txt = lab.cli(
        "node2",
        &[
            "exec",
            "client",
            "dig",
            "+short",
            "TXT",
            "web.frontend.local",
        ],
    );
    assert!(
        text(&txt.stdout).contains("no healthy instance"),
        "{}",
        text(&txt.stdout)
    );
    lab.cli_ok(
        "node1",
        &["service", "update", "web", "--all-unhealthy", "fail-open"],
    );
    let open = || {
        let out = lab.cli("node2", &["exec", "client", "dig", "web.frontend.local"]);
        let t = text(&out.stdout);
        t.contains("fail-open") && t.contains("ANSWER: 1")
    };
    assert!(
        wait_until(settle, poll, open),
        "fail-open does not answer, or is not marked"
    );
    for root in [&r1, &r2, &r3] {
        start_server(root);
    }
    assert!(wait_until(settle, poll, || everywhere(&lab, &all)));

    // Least connections: while web1 holds open connections, answers go to the others.
    lab.cli_ok(
        "node1",
        &["service", "update", "web", "--lb", "least-connections"],
    );
    // The connections outlive the wait below (httpd drops an idle one after 60 s); their
    // processes leave the exec's output pipes, or the exec would wait for them to end.
    let hold = "for i in 1 2 3; do (sleep 120 2>/dev/null | busybox nc web1.frontend.local 80 >/dev/null 2>&1 &) ; done; sleep 1";
    lab.cli_ok("node2", &["exec", "client", "sh", "-c", hold]);
    let avoided = || !spread(&lab, 6).contains_key("web1");
    assert!(
        wait_until(Duration::from_secs(30), poll, avoided),
        "web1 is still answered while busy: {}",
        text(&lab.cli("node1", &["service", "inspect", "web"]).stdout)
    );
    lab.down();
}
