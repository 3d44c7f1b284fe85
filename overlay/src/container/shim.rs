//! The container shim: joins the container's network namespace, unshares mount, UTS, IPC and PID
//! namespaces, installs the container's /etc files, then forks a tiny init (PID 1) that runs the
//! command with the container's capabilities only (and no_new_privs), forwards signals to it and
//! reaps orphans. The shim waits for PID 1 and records the
//! exit code. It must run in a single-threaded process (a fresh exec of the agent binary).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::caps::{drop_to, narrow_bounding, CapSet};
use super::state::ContainerDir;
use super::{ContainerError, ContainerSpec};

const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn c(s: &str) -> Result<CString, ContainerError> {
    CString::new(s).map_err(|_| ContainerError::InvalidCommand(format!("{s:?} has a NUL byte")))
}

fn cpath(p: &Path) -> Result<CString, ContainerError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| ContainerError::InvalidCommand(format!("path {} has a NUL byte", p.display())))
}

fn check(rc: libc::c_int, what: &str) -> Result<(), ContainerError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(ContainerError::last_os(what))
    }
}

/// Runs a container from its spec; returns the command's exit code (128 + signal if killed).
pub fn run(spec: &ContainerSpec) -> Result<i32, ContainerError> {
    if spec.command.is_empty() {
        return Err(ContainerError::InvalidCommand("empty command".into()));
    }
    let argv: Vec<CString> = spec
        .command
        .iter()
        .map(|a| c(a))
        .collect::<Result<_, _>>()?;
    let env = environment(spec)?;
    let dir = ContainerDir::new(spec.dir.clone());
    dir.write_shim_pid(std::process::id() as i32)?;
    enter_namespaces(spec)?;
    install_etc_files(spec, &dir)?;
    let mask = forwarded_mask();
    let caps = (spec.caps, super::caps::last_cap());
    // SAFETY: single-threaded process (checked by the caller's contract); fork/exec/wait are
    // used in the classic way and the child only calls async-signal-safe code or execs.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
        // PID 1 closes its end of this pipe once the container's root and /proc are in place:
        // only then is the container running for `exec` and command checks, which enter it
        // (entering before would reach the host's root).
        let mut ready = [-1; 2];
        check(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC), "pipe2")?;
        let pid1 = libc::fork();
        if pid1 < 0 {
            return Err(ContainerError::last_os("fork"));
        }
        if pid1 == 0 {
            libc::close(ready[0]);
            let code = init(spec.rootfs.as_deref(), &argv, &env, &mask, (caps, ready[1]));
            libc::_exit(code);
        }
        libc::close(ready[1]);
        wait_closed(ready[0]);
        libc::close(ready[0]);
        dir.write_pid(pid1)?;
        let mut status = 0;
        while libc::waitpid(pid1, &mut status, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(ContainerError::last_os("waitpid"));
            }
        }
        let code = exit_code(status);
        dir.write_exit(code)?;
        Ok(code)
    }
}

fn environment(spec: &ContainerSpec) -> Result<Vec<CString>, ContainerError> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOSTNAME={}", spec.name),
        "HOME=/root".to_string(),
        "TERM=xterm".to_string(),
    ];
    env.extend(spec.env.iter().cloned());
    env.iter().map(|e| c(e)).collect()
}

fn enter_namespaces(spec: &ContainerSpec) -> Result<(), ContainerError> {
    let ns = File::open(&spec.netns).map_err(|e| ContainerError::Sys {
        what: format!("open netns {}", spec.netns.display()),
        source: e,
    })?;
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        check(
            libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET),
            "setns(net)",
        )?;
        let flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
        check(libc::unshare(flags), "unshare(mnt, uts, ipc, pid)")?;
        let root = c("/")?;
        check(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "make / private",
        )?;
        let name = spec.name.as_bytes();
        check(
            libc::sethostname(name.as_ptr().cast(), name.len()),
            "sethostname",
        )?;
    }
    Ok(())
}

fn install_etc_files(spec: &ContainerSpec, dir: &ContainerDir) -> Result<(), ContainerError> {
    let root = spec.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
    for (src, name) in [
        (dir.resolv_conf(), "resolv.conf"),
        (dir.hosts(), "hosts"),
        (dir.hostname(), "hostname"),
    ] {
        let dst = root.join("etc").join(name);
        if !dst.exists() {
            if spec.rootfs.is_none() {
                continue; // never create files on the host filesystem
            }
            File::create(&dst).map_err(|e| ContainerError::Sys {
                what: format!("create {}", dst.display()),
                source: e,
            })?;
        }
        let (s, d) = (cpath(&src)?, cpath(&dst)?);
        // SAFETY: bind mount between two existing paths inside our private mount namespace.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                d.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check(rc, &format!("bind {} on {}", src.display(), dst.display()))?;
    }
    Ok(())
}

fn forwarded_mask() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// PID 1 of the container: mounts /proc, runs the command as PID 2, forwards signals, reaps.
/// Called only in a freshly forked child of the single-threaded shim.
/// The command runs with the capabilities `caps.0` only (`caps.1`: the kernel's last one).
/// Reads `fd` until its writers are gone (EOF) or it fails.
fn wait_closed(fd: i32) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local buffer from a descriptor this process owns.
        let n = unsafe { libc::read(fd, std::ptr::addr_of_mut!(byte).cast(), 1) };
        let interrupted =
            n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if !interrupted {
            return;
        }
    }
}

fn init(
    rootfs: Option<&Path>,
    argv: &[CString],
    env: &[CString],
    mask: &libc::sigset_t,
    (caps, ready): ((CapSet, u32), i32),
) -> i32 {
    // SAFETY: single-threaded child after fork; every pointer passed is valid for the call.
    unsafe { init_inner(rootfs, argv, env, mask, caps, ready) }
}

unsafe fn init_inner(
    rootfs: Option<&Path>,
    argv: &[CString],
    env: &[CString],
    mask: &libc::sigset_t,
    caps: (CapSet, u32),
    ready: i32,
) -> i32 {
    unsafe {
        if let Some(r) = rootfs {
            let Ok(r) = cpath(r) else { return 126 };
            if libc::chroot(r.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                eprintln!("shibafu: chroot: {}", std::io::Error::last_os_error());
                return 126;
            }
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            eprintln!("shibafu: mount /proc: {}", std::io::Error::last_os_error());
        }
        // A fresh sysfs shows this namespace's interfaces; failure is harmless.
        libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            flags,
            std::ptr::null(),
        );
        // PID 1 keeps no more than the container may (its bounding set is what `exec` and
        // command checks read to enter with the container's set).
        if let Err(step) = narrow_bounding(caps.0, caps.1) {
            eprintln!("shibafu: {step}: {}", std::io::Error::last_os_error());
            return 126;
        }
        // Root, /proc and bounding set in place: the container may be entered from now on.
        libc::close(ready);
        let child = libc::fork();
        if child < 0 {
            return 126;
        }
        if child == 0 {
            libc::sigprocmask(libc::SIG_UNBLOCK, mask, std::ptr::null_mut());
            if let Err(step) = drop_to(caps.0, caps.1) {
                eprintln!(
                    "shibafu: dropping capabilities: {step}: {}",
                    std::io::Error::last_os_error()
                );
                libc::_exit(126);
            }
            let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            args.push(std::ptr::null());
            let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
            envp.push(std::ptr::null());
            libc::execvpe(args[0], args.as_ptr(), envp.as_ptr());
            eprintln!(
                "shibafu: exec {:?}: {}",
                argv[0],
                std::io::Error::last_os_error()
            );
            libc::_exit(127);
        }
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(mask, &mut sig) != 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                libc::kill(child, sig);
                continue;
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    return exit_code(status);
                }
            }
        }
    }
}
