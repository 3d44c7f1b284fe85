//! Host tier: the container shim on its own, through the real `shibafu-agent shim` binary:
//! namespaces, hostname, /etc files, PID 1, exit codes, signal forwarding, stop.

use std::path::PathBuf;
use std::time::Duration;

use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::launch;
use shibafu_overlay::container::netns_file;
use shibafu_overlay::container::state::{ContainerDir, Status};
use shibafu_tests::shim::{wait_exit, Scratch};

fn agent_bin() -> PathBuf {
    shibafu_tests::bin("shibafu-agent")
}

fn container(s: &Scratch, name: &str, command: &[&str]) -> ContainerDir {
    s.container(name, command, CapSet::default())
}

#[test]
fn shim_runs_command_in_its_own_namespaces() {
    let s = Scratch::new("ns");
    netns_file::create(&s.netns()).expect("netns");
    assert!(netns_file::is_pinned(&s.netns()));
    let script = "echo host=$(hostname); echo pid=$$; cat /etc/resolv.conf; cat /etc/hostname; \
                  echo env=$GREETING; ip -o link show | wc -l; exit 7";
    let dir = container(&s, "web", &["sh", "-c", script]);
    launch::start(&agent_bin(), &dir, Duration::from_secs(5)).expect("start");
    assert_eq!(wait_exit(&dir), 7);
    let log = std::fs::read_to_string(dir.log()).expect("log");
    assert!(log.contains("host=web\n"), "{log}");
    // sh is PID 2: the shim's init is PID 1 of the new pid namespace.
    assert!(log.contains("pid=2\n"), "{log}");
    assert!(
        log.contains("nameserver 172.30.0.1\nsearch test.local\n"),
        "{log}"
    );
    assert!(log.contains("env=hello\n"), "{log}");
    // A fresh network namespace has only lo.
    assert!(log.contains("\n1\n"), "{log}");
    // The host's files are untouched.
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!host_resolv.contains("172.30.0.1"));
}

#[test]
fn stop_forwards_sigterm_to_the_command() {
    let s = Scratch::new("stop");
    netns_file::create(&s.netns()).expect("netns");
    let dir = container(&s, "sleeper", &["sleep", "300"]);
    let st = launch::start(&agent_bin(), &dir, Duration::from_secs(5)).expect("start");
    assert!(matches!(st, Status::Running(_)), "{st:?}");
    // sleep has no SIGTERM handler: killed by the forwarded signal well before the grace ends.
    let t = std::time::Instant::now();
    assert_eq!(
        launch::stop(&dir, Duration::from_secs(20)),
        Status::Exited(128 + 15)
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop waited for the grace period"
    );
}

#[test]
fn missing_command_reports_127() {
    let s = Scratch::new("missing");
    netns_file::create(&s.netns()).expect("netns");
    let dir = container(&s, "bad", &["/nonexistent/cmd"]);
    launch::start(&agent_bin(), &dir, Duration::from_secs(5)).expect("start");
    assert_eq!(wait_exit(&dir), 127);
    let log = std::fs::read_to_string(dir.log()).expect("log");
    assert!(log.contains("exec"), "{log}");
}
