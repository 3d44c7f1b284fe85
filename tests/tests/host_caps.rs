//! Host tier: what a container's processes may do. The shim starts the command with Docker's
//! default capability set and no_new_privs: adding an address or loading a kernel module fails,
//! ping and binding port 80 work; `--cap-add` / `--cap-drop` change the set; `shibafu exec` and
//! command health checks enter a running container with its set, not the agent's.

use std::time::Duration;

use shibafu_overlay::container::caps::CapSet;
use shibafu_overlay::container::launch;
use shibafu_overlay::container::netns_file;
use shibafu_overlay::container::state::{ContainerDir, Status};
use shibafu_tests::shim::{wait_exit, Scratch};
use shibafu_tests::{bin, is_root};

/// Prints the command's capability masks, then tries each privileged step and prints
/// `<step>=ok` or `<step>=refused`. Module loading goes through finit_module(2) with no file
/// and prints the errno: the kernel checks CAP_SYS_MODULE first (EPERM), with it the bad
/// descriptor fails (EBADF); a kernel built without module support says ENOSYS to everyone,
/// so there the capability masks are what shows SYS_MODULE is gone.
const PROBE: &str = r#"
grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
ip addr add 10.99.0.1/32 dev lo 2>/dev/null && echo addr=ok || echo addr=refused
ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 && echo ping=ok || echo ping=refused
python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 80))' 2>/dev/null \
  && echo bind80=ok || echo bind80=refused
python3 - <<'PY'
import ctypes, errno, platform
nr = {"x86_64": 313, "aarch64": 273}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(nr, -1, b"", 0)
print("module=" + errno.errorcode.get(ctypes.get_errno(), "ok"))
PY
"#;

/// Runs PROBE in a container with `caps`; its output.
fn probe(tag: &str, caps: CapSet) -> String {
    let s = Scratch::new(tag);
    netns_file::create(&s.netns()).expect("netns");
    let dir = s.container("caps", &["sh", "-c", PROBE], caps);
    launch::start(&bin("shibafu-agent"), &dir, Duration::from_secs(5)).expect("start");
    assert_eq!(wait_exit(&dir), 0, "{}", log(&dir));
    log(&dir)
}

fn log(dir: &ContainerDir) -> String {
    std::fs::read_to_string(dir.log()).unwrap_or_default()
}

fn mask(out: &str, field: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_prefix(':'))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"))
}

#[test]
fn a_default_container_holds_dockers_set_only() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let out = probe("default", CapSet::default());
    assert_eq!(mask(&out, "CapEff"), CapSet::default().0, "{out}");
    assert_eq!(mask(&out, "CapBnd"), CapSet::default().0, "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    for line in ["addr=refused", "ping=ok", "bind80=ok"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert_module_refused(&out);
}

#[test]
fn cap_add_and_cap_drop_change_the_set() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let admin = CapSet::resolve(&["NET_ADMIN".into()], &[]).expect("set");
    let out = probe("netadmin", admin);
    assert_eq!(mask(&out, "CapEff"), admin.0, "{out}");
    assert!(out.contains("addr=ok"), "NET_ADMIN adds addresses:\n{out}");
    assert_module_refused(&out);
    let none = CapSet::resolve(&[], &["ALL".into()]).expect("set");
    let out = probe("none", none);
    assert_eq!(mask(&out, "CapEff"), 0, "{out}");
    assert!(
        out.contains("bind80=refused"),
        "no NET_BIND_SERVICE:\n{out}"
    );
}

/// Loading a module failed for want of CAP_SYS_MODULE (EPERM), or because this kernel has no
/// module support (ENOSYS); never a later step (EBADF would mean the capability was there).
fn assert_module_refused(out: &str) {
    assert!(
        out.contains("module=EPERM") || out.contains("module=ENOSYS"),
        "module loading was not refused:\n{out}"
    );
}

/// Runs `sh -c SCRIPT` in the running container `dir` through `program ARGS... --pid PID --`.
fn entered(program: &str, sub: &str, dir: &ContainerDir, script: &str) -> String {
    let Status::Running(pid) = dir.status() else {
        panic!("container not running: {:?}", dir.status());
    };
    let out = std::process::Command::new(bin(program))
        .args([sub, "--pid", &pid.to_string(), "--", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("enter");
    assert!(out.status.success(), "{program} {sub}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn exec_and_command_checks_enter_with_the_containers_set() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let s = Scratch::new("enter");
    netns_file::create(&s.netns()).expect("netns");
    for (name, caps) in [
        ("plain", CapSet::default()),
        (
            "admin",
            CapSet::resolve(&["NET_ADMIN".into()], &[]).expect("set"),
        ),
    ] {
        let dir = s.container(name, &["sleep", "30"], caps);
        launch::start(&bin("shibafu-agent"), &dir, Duration::from_secs(5)).expect("start");
        let script = "grep -E '^CapEff' /proc/self/status; hostname; \
                      ip addr replace 10.99.0.9/32 dev lo 2>/dev/null && echo addr=ok || echo addr=refused";
        // The agent's `enter` (command health checks) and the CLI's re-exec (`shibafu exec`).
        for (program, sub) in [("shibafu-agent", "enter"), ("shibafu", "__enter")] {
            let out = entered(program, sub, &dir, script);
            assert_eq!(mask(&out, "CapEff"), caps.0, "{program}: {out}");
            assert!(
                out.contains(&format!("\n{name}\n")),
                "its UTS namespace: {out}"
            );
            let addr = if caps == CapSet::default() {
                "addr=refused"
            } else {
                "addr=ok"
            };
            assert!(out.contains(addr), "{program}, {name}: {out}");
        }
        launch::stop(&dir, Duration::from_millis(100));
    }
}
