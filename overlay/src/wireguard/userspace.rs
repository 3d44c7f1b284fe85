//! The userspace backend's process: boringtun-cli, started once per device and left running
//! (it daemonizes), so an agent restart does not drop the tunnels, as with the kernel module.
//! It serves WireGuard's configuration protocol on `/var/run/wireguard/<ifname>.sock`, which
//! [`super::uapi`] speaks.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// Where userspace WireGuard implementations put their configuration sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// How long boringtun-cli gets to start and open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration socket of device `ifname`.
pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{ifname}.sock"))
}

/// Does a process serve device `ifname`'s socket?
pub fn serving(ifname: &str) -> bool {
    UnixStream::connect(socket_path(ifname)).is_ok()
}

/// `program --version`, or why it cannot run.
pub async fn version(program: &Path) -> Result<String, String> {
    let out = tokio::time::timeout(
        START_TIMEOUT,
        Command::new(program)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{} --version did not answer", program.display()))?
    .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!("{} --version failed", program.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts `program` for device `ifname` in the caller's namespace, logging to `log`, and waits
/// until its socket answers.
pub async fn start(program: &Path, ifname: &str, log: &Path) -> Result<(), String> {
    std::fs::create_dir_all(SOCKET_DIR).map_err(|e| format!("creating {SOCKET_DIR}: {e}"))?;
    let _ = std::fs::remove_file(socket_path(ifname));
    let mut cmd = Command::new(program);
    // Root keeps its privileges: the device's sockets are reconfigured when peers change.
    cmd.arg("--disable-drop-privileges")
        .arg("--log")
        .arg(log)
        .arg(ifname)
        .kill_on_drop(true);
    let out = tokio::time::timeout(START_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "{} did not start within {START_TIMEOUT:?}",
                program.display()
            )
        })?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {ifname} failed ({}): {} (see {})",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            log.display()
        ));
    }
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while !serving(ifname) {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{} started but {} does not answer",
                program.display(),
                socket_path(ifname).display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Ends the process serving device `ifname` (found by its command line: the program's name
/// and the device name as its last argument): SIGTERM, and SIGKILL after two seconds for one
/// that does not answer it (a daemon stuck after a panic); removes its socket.
pub fn stop(program: &Path, ifname: &str) {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let pids = serving_pids(program, ifname);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            // SAFETY: kill(2) with a pid read from /proc and a valid signal number.
            unsafe {
                libc::kill(*pid, signal);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline && !serving_pids(program, ifname).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(socket_path(ifname));
}

/// The processes of `program` serving device `ifname`, found by their command lines.
fn serving_pids(program: &Path, ifname: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Some(base) = program.file_name() else {
        return out;
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        let ours = args
            .first()
            .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)).file_name() == Some(base))
            && args.last() == Some(&ifname.as_bytes());
        if ours {
            out.push(pid);
        }
    }
    out
}
