//! Host tier: `shibafu exec` into a container with a root filesystem of its own runs from a
//! sealed in-memory copy of the CLI, never from the binary on disk (a container's files could
//! otherwise make that binary run inside it and reach it: CVE-2019-5736), and the command runs.
//! The root filesystem is a minimal one: busybox and the libraries it links.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::launch;
use shibafu_overlay::container::netns_file;
use shibafu_overlay::container::state::Status;
use shibafu_tests::fake_agent::FakeAgent;
use shibafu_tests::shim::Scratch;
use shibafu_tests::{bin, is_root, wait_until};

/// Copies `file` to the same path under `root`.
fn copy_in(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

/// A root filesystem with busybox (as sh, sleep, echo) and the libraries it needs.
fn busybox_root(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    copy_in(root, busybox);
    let ldd = std::process::Command::new("ldd")
        .arg(busybox)
        .output()
        .expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if lib.starts_with('/') {
            copy_in(root, Path::new(lib));
        }
    }
    for dir in ["proc", "sys", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).expect("dir");
    }
    for tool in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).expect("link");
    }
}

/// The exe of the running `shibafu __enter` process, once there is one.
fn entering_exe() -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        cmd.contains("__enter")
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
        exe = entering_exe();
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
