//! Host tier: `shibafu exec` and command health checks into a container with a root filesystem
//! of its own run from a sealed in-memory copy of the CLI or agent, never from the binary on
//! disk (a container's files could otherwise make that binary run inside it and reach it:
//! CVE-2019-5736), and the command runs.
//! The root filesystem is a minimal one: busybox and the libraries it links.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::launch;
use shibafu_overlay::container::netns_file;
use shibafu_overlay::container::sealed::shares_root;
use shibafu_overlay::container::state::Status;
use shibafu_overlay::health::{Prober, SystemProber, Target};
use shibafu_overlay::model::Probe;
use shibafu_tests::fake_agent::FakeAgent;
use shibafu_tests::shim::{busybox_root, Scratch};
use shibafu_tests::{bin, is_root, wait_until};

/// The exe of a running process whose command line holds `word`, once there is one.
fn entering_exe(word: &str) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        cmd.contains(word)
            .then(|| std::fs::read_link(p.path().join("exe")).ok())
            .flatten()
            .map(|e: PathBuf| e.display().to_string())
    })
}

#[test]
fn exec_into_a_rootfs_container_runs_from_a_sealed_copy() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let s = Scratch::new("rootfs");
    netns_file::create(&s.netns()).expect("netns");
    let root = s.root.join("rootfs");
    busybox_root(&root);
    let dir = s.container_in("boxed", &["sleep", "30"], CapSet::default(), Some(root));
    launch::start(&bin("shibafu-agent"), &dir, Duration::from_secs(5)).expect("start");
    let Status::Running(pid) = dir.status() else {
        panic!("not running: {:?}", std::fs::read_to_string(dir.log()));
    };
    let agent = FakeAgent::start(move |_| {
        let c = json!({"name": "boxed", "state": "running", "pid": pid, "command": ["sleep"],
                       "netns": "/run/netns/x", "interfaces": []});
        (200, c.to_string())
    });
    let mut exec = agent.cli(&["exec", "boxed", "sh", "-c", "sleep 2; echo inside"]);
    let child = exec.stdout(Stdio::piped()).spawn().expect("exec");
    let mut exe = None;
    let seen = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        exe = entering_exe(&format!("__enter\0--pid\0{pid}\0"));
        exe.is_some()
    });
    let out = child.wait_with_output().expect("exec output");
    assert!(seen, "no __enter process seen");
    let exe = exe.unwrap_or_default();
    assert!(exe.starts_with("/memfd:shibafu-enter"), "ran from {exe}");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");
    launch::stop(&dir, Duration::from_millis(100));
}

#[test]
fn command_checks_of_a_rootfs_container_enter_from_a_sealed_copy() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let s = Scratch::new("rootfscheck");
    netns_file::create(&s.netns()).expect("netns");
    let root = s.root.join("rootfs");
    busybox_root(&root);
    let dir = s.container_in("checked", &["sleep", "30"], CapSet::default(), Some(root));
    launch::start(&bin("shibafu-agent"), &dir, Duration::from_secs(5)).expect("start");
    let Status::Running(pid) = dir.status() else {
        panic!("not running: {:?}", std::fs::read_to_string(dir.log()));
    };
    assert!(
        !shares_root(pid).expect("root of PID 1"),
        "a container is running only once it is in its own root (entering before would reach the host's)"
    );
    let target = Target {
        name: "checked".into(),
        addr: "127.0.0.1".parse().expect("ip"),
        netns: s.netns(),
        pid: Some(pid),
    };
    let probe = Probe::Cmd {
        argv: vec!["sh".into(), "-c".into(), "sleep 1; echo healthy".into()],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let word = format!("\0enter\0--pid\0{pid}\0");
    let watcher = std::thread::spawn(move || {
        let mut exe = None;
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            exe = entering_exe(&word);
            exe.is_some()
        });
        exe
    });
    let verdict = rt.block_on(async {
        let p = SystemProber::start(bin("shibafu-agent")).expect("prober");
        p.probe(&target, &probe, Duration::from_secs(5)).await
    });
    let exe = watcher.join().expect("watcher").unwrap_or_default();
    assert!(verdict.passed, "{verdict:?}");
    assert_eq!(verdict.output.trim(), "healthy");
    assert!(exe.starts_with("/memfd:shibafu-enter"), "ran from {exe}");
    launch::stop(&dir, Duration::from_millis(100));
}
