//! Command checks: the command runs inside a container's mount, UTS, IPC, network and PID
//! namespaces and its root, with the container's capabilities, entered through its PID 1 by
//! `shibafu-agent enter`, as `shibafu exec` does. Its output (stdout and stderr, interleaved) is kept up to [`MAX_OUTPUT`] bytes;
//! past the timeout its whole process group is killed.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::probe::Verdict;
use super::report::{clip_output, clip_text};
use crate::model::MAX_OUTPUT;

/// PATH of a container's command, as the shim sets it.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command (`ENTER enter --pid PID -- ARGV...`) that runs `argv` in the container whose
/// PID 1 is `pid`; `enter` is the agent binary.
pub fn entering(enter: &Path, pid: i32, name: &str, argv: &[String]) -> Command {
    let mut cmd = Command::new(enter);
    cmd.args(["enter", "--pid", &pid.to_string(), "--"])
        .args(argv)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("HOSTNAME", name)
        .env("HOME", "/root");
    cmd
}

/// Runs `argv` in the container (PID 1 `pid`): passes on exit 0, fails otherwise, on a spawn
/// error, or past `timeout`.
pub async fn run_in_container(
    enter: &Path,
    pid: i32,
    name: &str,
    argv: &[String],
    timeout: Duration,
) -> Verdict {
    let (reader, mut child) = match spawn(entering(enter, pid, name, argv)).await {
        Ok(started) => started,
        Err(e) => return Verdict::fail(format!("cannot start the check command: {e}")),
    };
    let mut output = Vec::new();
    let finished = tokio::time::timeout(timeout, async {
        read_capped(reader, &mut output).await;
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) => judge(status, clip_output(&output)),
        Ok(Err(e)) => Verdict::fail(format!("waiting for the check command: {e}")),
        Err(_) => {
            kill_group(&mut child).await;
            let partial = String::from_utf8_lossy(&output);
            Verdict::fail(clip_text(format!(
                "timed out after {} ms\n{partial}",
                timeout.as_millis()
            )))
        }
    }
}

/// Starts `cmd` in its own process group with stdout and stderr on one pipe, on a blocking
/// thread (fork and exec stay off the async workers).
async fn spawn(mut cmd: Command) -> std::io::Result<(pipe::Receiver, Child)> {
    let (read, write) = pipe_pair()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone()?))
        .stderr(Stdio::from(write))
        .process_group(0)
        .kill_on_drop(true);
    // The command (holding the write end) is dropped on that thread right after the spawn, so
    // the pipe ends when the child's side closes.
    let child = tokio::task::spawn_blocking(move || cmd.spawn())
        .await
        .map_err(std::io::Error::other)??;
    Ok((pipe::Receiver::from_owned_fd(read)?, child))
}

fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors on success; each is then owned exactly once.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads until the pipe ends, keeping the first bytes (a little over [`MAX_OUTPUT`], so the cut
/// can fall on a char boundary) and draining the rest so the command never blocks on it.
async fn read_capped(mut reader: pipe::Receiver, kept: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = (MAX_OUTPUT + 4).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn judge(status: ExitStatus, output: String) -> Verdict {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Verdict::pass(output);
    }
    if !output.is_empty() {
        return Verdict::fail(output);
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => Verdict::fail(format!("exit status {code}")),
        (None, Some(sig)) => Verdict::fail(format!("killed by signal {sig}")),
        (None, None) => Verdict::fail(format!("{status}")),
    }
}

/// Kills the command's process group (`shibafu-agent enter` and the command it forked) and
/// reaps the entering process.
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: a plain kill(2) of the process group the child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_enters_through_the_agent_with_a_container_environment() {
        let agent = Path::new("/usr/local/bin/shibafu-agent");
        let cmd = entering(agent, 4242, "api", &["pg_isready".into(), "-q".into()]);
        assert_eq!(cmd.as_std().get_program(), agent);
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["enter", "--pid", "4242", "--", "pg_isready", "-q"]);
        assert!(cmd
            .as_std()
            .get_envs()
            .any(|(k, v)| k == "HOSTNAME" && v.is_some_and(|v| v == "api")));
    }

    #[test]
    fn exit_status_and_output_make_the_verdict() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            judge(ExitStatus::from_raw(0), "ok".into()),
            Verdict::pass("ok")
        );
        assert_eq!(
            judge(ExitStatus::from_raw(3 << 8), String::new()),
            Verdict::fail("exit status 3")
        );
        assert_eq!(
            judge(ExitStatus::from_raw(3 << 8), "down".into()),
            Verdict::fail("down")
        );
        assert_eq!(
            judge(ExitStatus::from_raw(9), String::new()),
            Verdict::fail("killed by signal 9")
        );
    }
}
