//! Observing a container's exit without polling: a pidfd (`pidfd_open(2)`) on its shim, registered
//! with tokio, becomes readable when the shim is gone. The shim writes the exit code file and then
//! exits, so by then the code is on disk. Works for any process, not only our children, so it
//! covers containers adopted after an agent restart.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::warn;

use super::state::{ContainerDir, Status};

/// How often a container is checked when its processes cannot be watched by pidfd.
pub const SLOW_POLL: Duration = Duration::from_secs(2);

/// A process handle that stays bound to one process (no pid reuse races once open).
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for `pid`; `ESRCH` if there is no such process, `ENOSYS` before Linux 5.3.
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open(pid, 0) takes two integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Resolves once the process has exited (readable pidfd). Needs a tokio runtime with I/O.
    pub async fn exited(self) -> io::Result<()> {
        // SAFETY: the OwnedFd is open and moves into the AsyncFd, which closes it when dropped.
        let fd = unsafe { AsyncFd::register_with_interest(self.0, Interest::READABLE) }
            .map_err(io::Error::from)?;
        let _ready = fd.readable().await?;
        Ok(())
    }
}

async fn read_status(dir: &ContainerDir) -> (Status, Option<i32>) {
    let d = dir.clone();
    tokio::task::spawn_blocking(move || (d.status(), d.shim_pid()))
        .await
        .unwrap_or((Status::Created, None))
}

/// Resolves once the container in `dir` no longer runs, with its status then: `Exited(code)`, or
/// `Created` when it never got a process to watch.
///
/// Waits on a pidfd of the shim (of PID 1 if no shim pid was recorded). If no pidfd can be
/// opened (a kernel older than 5.3, or the process just went away), or the shim is gone while
/// PID 1 lives on (the shim was killed), it falls back to reading the status once and, only if
/// the container is still running, polling that one container every [`SLOW_POLL`]. Files are
/// read on blocking threads.
pub async fn exited(dir: ContainerDir) -> Status {
    let mut watched = None;
    loop {
        let pid = match read_status(&dir).await {
            (status @ Status::Exited(_), _) | (status @ Status::Created, None) => return status,
            (_, Some(shim)) => shim,
            (Status::Running(pid1), None) => pid1,
        };
        if watched == Some(pid) {
            // Exited but not reaped yet (a zombie stays readable): nothing more to wait on.
            return slow_poll(&dir).await;
        }
        let exit = match PidFd::open(pid) {
            Ok(fd) => fd.exited().await,
            Err(e) => Err(e),
        };
        if let Err(e) = exit {
            if e.raw_os_error() != Some(libc::ESRCH) {
                warn!(container = %dir.path().display(), pid, error = %e,
                    "cannot watch the container's process; polling it instead");
            }
            return slow_poll(&dir).await;
        }
        // The shim is gone: its exit code is on disk now.
        watched = Some(pid);
    }
}

/// Reads the status once, then every [`SLOW_POLL`] while the container runs.
async fn slow_poll(dir: &ContainerDir) -> Status {
    loop {
        let (status, _) = read_status(dir).await;
        if !matches!(status, Status::Running(_)) {
            return status;
        }
        tokio::time::sleep(SLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A container directory under a scratch root, removed with it on drop.
    struct Scratch {
        root: std::path::PathBuf,
        dir: ContainerDir,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn scratch(tag: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("sf-exit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = ContainerDir::under(&root, "job");
        std::fs::create_dir_all(dir.path()).expect("mkdir");
        Scratch { root, dir }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn pidfd_fires_when_the_process_exits() {
        let mut child = Command::new("sleep").arg("0.2").spawn().expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let fd = PidFd::open(pid).expect("pidfd_open (Linux >= 5.3)");
        let t = std::time::Instant::now();
        runtime().block_on(fd.exited()).expect("exited");
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(child.wait().expect("reap").success());
        assert_eq!(
            PidFd::open(pid).map_err(|e| e.raw_os_error()).err(),
            Some(Some(libc::ESRCH))
        );
    }

    #[test]
    fn exit_code_is_read_once_the_shim_is_gone() {
        let s = scratch("code");
        let d = &s.dir;
        // A stand-in shim: it is PID 1 and shim at once, writes the exit file, then exits.
        let exit = d.path().join("exit");
        let mut shim = Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 0.2; echo 4 > {}", exit.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("sh");
        let pid = i32::try_from(shim.id()).expect("pid");
        d.write_pid(pid).expect("pid");
        d.write_shim_pid(pid).expect("shim pid");
        let status = runtime().block_on(exited(d.clone()));
        assert_eq!(status, Status::Exited(4));
        assert!(shim.wait().expect("reap").success());
        d.remove().expect("cleanup");
    }

    #[test]
    fn gone_processes_are_read_once_without_waiting() {
        let s = scratch("gone");
        let d = &s.dir;
        let rt = runtime();
        assert_eq!(rt.block_on(exited(d.clone())), Status::Created);
        // Recorded pids that no longer exist, no exit file: killed (137), as `status` says.
        let mut done = Command::new("true").spawn().expect("true");
        done.wait().expect("reap");
        let pid = i32::try_from(done.id()).expect("pid");
        d.write_pid(pid).expect("pid");
        d.write_shim_pid(pid).expect("shim pid");
        let t = std::time::Instant::now();
        assert_eq!(rt.block_on(exited(d.clone())), Status::Exited(137));
        assert!(t.elapsed() < SLOW_POLL, "{:?}", t.elapsed());
        d.remove().expect("cleanup");
    }
}
