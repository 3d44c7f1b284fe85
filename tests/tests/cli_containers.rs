//! The container commands of the real `shibafu` binary (`run`, `exec`, `ps`, `logs`, `stop`,
//! `rm`, `network attach`) against a fake agent: a tiny HTTP/1.1 server on a unix socket that
//! answers with canned bodies of the agent API contract and records every request. Proves the
//! CLI's side: request bodies, streaming, exit codes, output and error messages. The real agent
//! is exercised by the lab tier.
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`); the `exec` test also
//! needs root.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shibafu_overlay::api::{ApiError, ContainerInfo, InterfaceInfo, LogChunk};
use shibafu_tests::fake_agent::{FakeAgent, Seen};
use shibafu_tests::{is_root, wait_until};

/// A 200 answer with `v` (built with `json!`) as the body.
fn ok(v: Value) -> (u16, String) {
    (200, v.to_string())
}

fn api_error(e: ApiError) -> (u16, String) {
    (e.status(), serde_json::to_string(&e).expect("json"))
}

fn iface(network: &str, ifname: &str, ipv4: &str) -> InterfaceInfo {
    InterfaceInfo {
        network: network.into(),
        ifname: ifname.into(),
        ipv4: ipv4.parse().expect("ipv4"),
        ipv6: None,
        mac: "02:00:ac:16:00:02".parse().expect("mac"),
    }
}

fn container(name: &str, state: &str, pid: Option<i32>, exit_code: Option<i32>) -> ContainerInfo {
    ContainerInfo {
        name: name.into(),
        state: state.into(),
        pid,
        exit_code,
        command: vec!["sh".into()],
        netns: format!("/run/shibafu/netns/{name}"),
        interfaces: vec![iface("backend", "eth0", "172.22.0.2")],
        cni: None,
    }
}

/// The offset asked for in a logs path.
fn offset_of(path: &str) -> usize {
    path.split_once("offset=")
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {path}"))
}

/// A log that grows by `step` bytes per request and ends with `code` once complete, after a
/// few idle polls, so the CLI must poll, stream and drain.
fn growing_log(text: &'static str, step: usize, code: i32) -> impl FnMut(&Seen) -> (u16, String) {
    let mut polls_at_end = 0;
    move |req: &Seen| {
        let offset = offset_of(&req.path);
        let end = (offset + step).min(text.len());
        let mut exit_code = None;
        if offset == text.len() {
            polls_at_end += 1;
            if polls_at_end > 2 {
                exit_code = Some(code);
            }
        }
        ok(json!(LogChunk {
            data: text[offset..end].to_string(),
            next_offset: end as u64,
            exit_code,
        }))
    }
}

#[test]
fn run_streams_the_log_and_exits_with_the_containers_code() {
    let mut log = growing_log("hello\nfrom the container\n", 7, 3);
    let agent = FakeAgent::start(move |req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/containers") => ok(json!(container("t", "running", Some(1), None))),
        ("GET", p) if p.starts_with("/v1/containers/t/logs?") => log(req),
        _ => api_error(ApiError::not_found("no such route")),
    });
    let (out, text) = agent.run(&[
        "run",
        "--name",
        "t",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nfrom the container\n",
        "{text}"
    );
    assert!(out.stderr.is_empty(), "{text}");
    let seen = agent.seen();
    let body: Value = serde_json::from_str(&seen[0].body).expect("run body");
    assert_eq!(
        body,
        json!({"name": "t", "networks": ["n"], "command": ["sh", "-c", "exit 3"]})
    );
    let offsets: Vec<usize> = seen[1..].iter().map(|s| offset_of(&s.path)).collect();
    assert_eq!(offsets[..4], [0, 7, 14, 21], "{offsets:?}");
    assert!(offsets[4..].iter().all(|&o| o == 25), "{offsets:?}");
}

#[test]
fn run_detached_prints_the_addresses() {
    let agent = FakeAgent::start(|req| {
        let mut c = container("api", "running", Some(1), None);
        c.interfaces.push(iface("frontend", "eth1", "172.21.0.13"));
        assert_eq!(req.path, "/v1/containers");
        ok(json!(c))
    });
    let (out, text) = agent.run(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "backend",
        "--network",
        "frontend",
        "--alias",
        "v1",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "api   eth0   backend    172.22.0.2\napi   eth1   frontend   172.21.0.13\n"
    );
    let body: Value = serde_json::from_str(&agent.seen()[0].body).expect("json");
    assert_eq!(body["networks"], json!(["backend", "frontend"]));
    assert_eq!(body["aliases"], json!(["v1"]));
    assert_eq!(body["command"], json!(["sleep", "1000"]));
}

#[test]
fn agent_errors_are_shown_as_they_are() {
    let agent = FakeAgent::start(|req| {
        match req.method.as_str() {
        "POST" => api_error(ApiError::new(
            shibafu_overlay::api::ErrorKind::Duplicate,
            "container \"api\" already exists: remove it with shibafu rm api, or pick another --name",
        )),
        _ => ok(json!(container("api", "exited", None, Some(3)))),
    }
    });
    let (out, text) = agent.run(&["run", "--name", "api", "--network", "n", "true"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(out.stdout.is_empty(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: container \"api\" already exists: remove it with shibafu rm api, or pick another --name\n"
    );
    let (out, text) = agent.run(&["exec", "api", "true"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: container api is not running (exited 3); start a new one with shibafu run\n"
    );
}

#[test]
fn unreachable_agent_says_what_to_do() {
    let agent = FakeAgent::start(|_| ok(json!([])));
    let mut cmd = agent.cli(&["ps"]);
    cmd.env("SHIBAFU_AGENT", agent.dir.join("missing.sock"));
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach agent at unix:"),
        "{err}"
    );
    assert!(
        err.contains("is shibafu-agent running on this host?"),
        "{err}"
    );
}

#[test]
fn ps_hides_exited_containers_unless_all() {
    let agent = FakeAgent::start(|_| {
        let mut attached = container("cni", "attached", None, None);
        attached.interfaces = vec![iface("backend", "eth0", "172.22.0.9")];
        ok(json!(vec![
            container("web", "running", Some(10), None),
            container("job", "exited", None, Some(3)),
            attached,
        ]))
    });
    let (out, text) = agent.run(&["ps"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\
NAME   STATE      NETWORKS   ADDRESSES
cni    attached   backend    172.22.0.9
web    running    backend    172.22.0.2
"
    );
    let (out, text) = agent.run(&["ps", "-a"]);
    assert!(out.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("\njob    exited (3)   backend    172.22.0.2\n"),
        "{text}"
    );
    let (out, text) = agent.run(&["ps", "--all", "--format", "json"]);
    assert!(out.status.success(), "{text}");
    let list: Vec<ContainerInfo> = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cni", "job", "web"]);
    assert!(agent.requests().iter().all(|r| r == "GET /v1/containers"));
}

#[test]
fn logs_prints_what_exists_and_follows_to_the_end() {
    let mut log = growing_log("one\ntwo\nthree\n", 4, 0);
    let agent = FakeAgent::start(move |req| {
        if req.path.starts_with("/v1/containers/job/logs?") {
            log(req)
        } else {
            api_error(ApiError::not_found("no container named \"x\""))
        }
    });
    let (out, text) = agent.run(&["logs", "-f", "job"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    let (out, text) = agent.run(&["logs", "job"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    let (out, _) = agent.run(&["logs", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no container named \"x\"\n"
    );
}

#[test]
fn stop_and_rm_try_every_name() {
    let agent = FakeAgent::start(|req| {
        let name = req
            .path
            .trim_start_matches("/v1/containers/")
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_string();
        if name == "ghost" {
            api_error(ApiError::not_found("no container named \"ghost\""))
        } else {
            ok(json!(container(&name, "exited", None, Some(0))))
        }
    });
    let (out, text) = agent.run(&["stop", "-t", "2", "a", "ghost", "b"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no container named \"ghost\"\n"
    );
    let mut stops = agent.requests();
    stops.sort();
    assert_eq!(
        stops,
        [
            "POST /v1/containers/a/stop?grace=2",
            "POST /v1/containers/b/stop?grace=2",
            "POST /v1/containers/ghost/stop?grace=2"
        ]
    );
    let (out, text) = agent.run(&["rm", "-f", "a"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
    assert_eq!(
        agent.requests().last().map(String::as_str),
        Some("DELETE /v1/containers/a?force=true")
    );
}

#[test]
fn network_attach_and_detach() {
    let agent = FakeAgent::start(|req| {
        let mut c = container("db", "attached", None, None);
        c.interfaces.push(iface("frontend", "eth1", "172.21.0.7"));
        assert!(req.path.starts_with("/v1/attachments"), "{}", req.path);
        ok(json!(c))
    });
    let (out, text) = agent.run(&[
        "network", "attach", "frontend", "--netns", "blue", "--name", "db", "--alias", "pg",
    ]);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "db   eth1   frontend   172.21.0.7\n"
    );
    let body: Value = serde_json::from_str(&agent.seen()[0].body).expect("json");
    assert_eq!(
        body,
        json!({"network": "frontend", "netns": "/run/netns/blue", "name": "db", "aliases": ["pg"]})
    );
    let (out, text) = agent.run(&["network", "detach", "frontend", "--name", "db"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        agent.requests().last().map(String::as_str),
        Some("DELETE /v1/attachments/frontend/db")
    );
}

/// Sends SIGINT to a child.
fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn ctrl_c_stops_the_container_and_reports_its_code() {
    let stopped = Arc::new(AtomicBool::new(false));
    let stopped2 = stopped.clone();
    let agent = FakeAgent::start(move |req| match req.method.as_str() {
        "POST" if req.path == "/v1/containers" => {
            ok(json!(container("t", "running", Some(1), None)))
        }
        "POST" => {
            stopped2.store(true, Ordering::SeqCst);
            ok(json!(container("t", "exited", None, Some(143))))
        }
        _ => {
            let done = stopped2.load(Ordering::SeqCst);
            ok(json!(LogChunk {
                data: String::new(),
                next_offset: 0,
                exit_code: done.then_some(143),
            }))
        }
    });
    let mut child = agent
        .cli(&["run", "--name", "t", "--network", "n", "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Following has started (and with it the Ctrl-C handler) once logs are being polled.
    let polling = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        agent
            .requests()
            .iter()
            .filter(|r| r.contains("/logs?"))
            .count()
            >= 3
    });
    if !polling {
        let _ = child.kill();
        let _ = child.wait();
        panic!("shibafu run never polled the log: {:?}", agent.requests());
    }
    interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(agent
        .requests()
        .contains(&"POST /v1/containers/t/stop?grace=10".to_string()));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "stopping container t (Ctrl-C again to leave it running)\n"
    );
}

/// A process killed and reaped on drop.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_enters_the_process_namespaces_and_passes_the_exit_code() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A process in mount and UTS namespaces of its own (exec refuses one that shares the
    // host's mount namespace: that is no container).
    let sleeper = Sleeper(
        Command::new("unshare")
            .args(["--mount", "--uts", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep"),
    );
    let pid = i32::try_from(sleeper.0.id()).expect("pid");
    let own_mnt = std::fs::read_link("/proc/self/ns/mnt").expect("own mnt ns");
    let unshared = shibafu_tests::wait_until(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(10),
        || std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| m != own_mnt),
    );
    assert!(unshared, "unshare did not make its namespaces");
    let agent = FakeAgent::start(move |_| ok(json!(container("api", "running", Some(pid), None))));
    let (out, text) = agent.run(&[
        "exec",
        "-e",
        "GREETING=hi",
        "api",
        "sh",
        "-c",
        "echo $GREETING $HOSTNAME; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi api\n", "{text}");
    assert_eq!(agent.requests(), ["GET /v1/containers/api"]);
}
