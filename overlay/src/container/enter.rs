//! Entering a running container the way its own processes run: its mount, UTS, IPC, network and
//! PID namespaces, its root directory, and its capability set (the bounding set of its PID 1,
//! which the shim narrowed to the container's set) with no_new_privs. `shibafu exec` and command
//! health checks go through it, so neither gives a container's files more power than the
//! container has. It must run in a single-threaded process (setns of a mount namespace refuses
//! threads), as `shibafu-agent enter` and the CLI's re-exec do.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use super::caps::{drop_to, last_cap, CapSet};
use super::ContainerError;

/// The namespaces joined, in order (the mount namespace last: the others are opened through
/// the host's /proc before it changes).
const NAMESPACES: [&str; 5] = ["ipc", "uts", "net", "pid", "mnt"];

/// The capability bounding set in a `/proc/PID/status` text (`CapBnd:` line).
pub fn parse_bounding(status: &str) -> Option<CapSet> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok().map(CapSet)
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, ContainerError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_str())
                .map_err(|_| ContainerError::InvalidCommand(format!("{s:?} has a NUL byte")))
        })
        .collect()
}

fn open(path: &str) -> Result<File, ContainerError> {
    File::open(path).map_err(|e| ContainerError::Sys {
        what: format!("open {path}"),
        source: e,
    })
}

/// Runs `argv` with the environment `env` (`KEY=VALUE`) in the container whose PID 1 is `pid`;
/// returns its exit code (128 + N when killed by signal N). The caller's stdio and terminal
/// are the command's; Ctrl-C and Ctrl-\ reach it through the terminal, not through this
/// process, which only waits.
pub fn run(pid: i32, argv: &[String], env: &[String]) -> Result<i32, ContainerError> {
    if argv.is_empty() {
        return Err(ContainerError::InvalidCommand("empty command".into()));
    }
    // Everything is read through one open of /proc/PID: a PID reused meanwhile cannot mix two
    // processes' namespaces, caps and root.
    let proc = open(&format!("/proc/{pid}"))?;
    let at = |name: &str| -> Result<File, ContainerError> {
        let c = CString::new(name).map_err(|_| ContainerError::InvalidCommand(name.into()))?;
        // SAFETY: openat relative to a directory descriptor we own; the result is owned at once.
        let fd = unsafe {
            libc::openat(
                proc.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(ContainerError::last_os(format!("open /proc/{pid}/{name}")));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    };
    let mut status = String::new();
    std::io::Read::read_to_string(&mut at("status")?, &mut status).map_err(|e| {
        ContainerError::Sys {
            what: format!("read /proc/{pid}/status"),
            source: e,
        }
    })?;
    let caps = parse_bounding(&status).ok_or_else(|| ContainerError::State {
        path: format!("/proc/{pid}/status").into(),
        reason: "no CapBnd line".into(),
    })?;
    let last = last_cap();
    let fds: Vec<File> = NAMESPACES
        .iter()
        .map(|ns| at(&format!("ns/{ns}")))
        .collect::<Result<_, _>>()?;
    // A process sharing this host's mount namespace is no container (a PID reused by a host
    // process, say): entering it would run the command on the host.
    let own = std::fs::metadata("/proc/self/ns/mnt");
    let theirs = fds[NAMESPACES.len() - 1].metadata();
    if let (Ok(a), Ok(b)) = (own, theirs) {
        use std::os::unix::fs::MetadataExt;
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Err(ContainerError::InvalidCommand(format!(
                "pid {pid} shares this host's mount namespace: not a container"
            )));
        }
    }
    let root = at("root")?;
    let (args, envp) = (cstrings(argv)?, cstrings(env)?);
    // SAFETY: plain syscalls in a single-threaded process on descriptors it owns; the child
    // only calls async-signal-safe functions before exec or _exit.
    unsafe {
        for (fd, ns) in fds.iter().zip(NAMESPACES) {
            if libc::setns(fd.as_raw_fd(), 0) != 0 {
                return Err(ContainerError::last_os(format!("setns {ns}")));
            }
        }
        if libc::fchdir(root.as_raw_fd()) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err(ContainerError::last_os("enter the container's root"));
        }
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        let child = libc::fork();
        if child < 0 {
            return Err(ContainerError::last_os("fork"));
        }
        if child == 0 {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            if drop_to(caps, last).is_err() {
                libc::_exit(126);
            }
            let mut a: Vec<*const libc::c_char> = args.iter().map(|s| s.as_ptr()).collect();
            a.push(std::ptr::null());
            let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
            e.push(std::ptr::null());
            libc::execvpe(a[0], a.as_ptr(), e.as_ptr());
            let code = if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                127
            } else {
                126
            };
            libc::_exit(code);
        }
        let mut st = 0;
        while libc::waitpid(child, &mut st, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(ContainerError::last_os("waitpid"));
            }
        }
        Ok(if libc::WIFSIGNALED(st) {
            128 + libc::WTERMSIG(st)
        } else {
            libc::WEXITSTATUS(st)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bounding_set() {
        let status =
            "Name:\tsh\nCapInh:\t0000000000000000\nCapBnd:\t00000000a80425fb\nCapAmb:\t0\n";
        assert_eq!(parse_bounding(status), Some(CapSet::default()));
        assert_eq!(parse_bounding("Name:\tsh\n"), None);
        assert_eq!(parse_bounding("CapBnd:\tzz\n"), None);
    }
}
