//! Starting and stopping container shims from the agent: the shim is spawned detached (own
//! session, stdio to the container log) so it survives agent restarts.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::state::{ContainerDir, Status};
use super::ContainerError;

/// Spawns `<agent_bin> shim --spec <dir>/spec.json` and waits (up to `timeout`) until the
/// container's PID 1 is running or has already exited; returns that status.
pub fn start(
    agent_bin: &Path,
    dir: &ContainerDir,
    timeout: Duration,
) -> Result<Status, ContainerError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())
        .map_err(|e| ContainerError::Sys {
            what: format!("open {}", dir.log().display()),
            source: e,
        })?;
    let err_log = log.try_clone().map_err(|e| ContainerError::Sys {
        what: "dup log".into(),
        source: e,
    })?;
    let mut cmd = Command::new(agent_bin);
    cmd.arg("shim")
        .arg("--spec")
        .arg(dir.spec_file())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .env_remove("RUST_LOG")
        .env_remove(crate::telemetry::LOG_ENV)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| ContainerError::Sys {
        what: format!("spawn {}", agent_bin.display()),
        source: e,
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        match dir.status() {
            Status::Created => {}
            s => {
                // The shim is reaped by whoever outlives it; dropping the handle does not kill it.
                std::thread::spawn(move || child.wait());
                return Ok(s);
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            if dir.status() == Status::Created {
                return Err(ContainerError::State {
                    path: dir.log(),
                    reason: format!("shim exited ({st}) before the container started; see the log"),
                });
            }
            continue;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(ContainerError::State {
                path: dir.path().to_path_buf(),
                reason: format!("container did not start within {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops a running container: SIGTERM to its PID 1 (forwarded to the command), SIGKILL after
/// `grace`. Returns the final status.
pub fn stop(dir: &ContainerDir, grace: Duration) -> Status {
    let Status::Running(pid) = dir.status() else {
        return dir.status();
    };
    // SAFETY: kill(2) on a pid we recorded; at worst ESRCH.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !matches!(dir.status(), Status::Running(_)) {
            return wait_exit_file(dir);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_exit_file(dir)
}

/// After PID 1 is gone the shim writes the exit code a moment later; wait briefly for it.
fn wait_exit_file(dir: &ContainerDir) -> Status {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = dir.status();
        if matches!(s, Status::Exited(_)) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
