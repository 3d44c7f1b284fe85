//! Processes of the lab: start a daemon inside a namespace (detached, logging to a file), check
//! that a pid is still the process we started, stop it, and find stray lab processes.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::netns;
use crate::state::ProcSpec;

/// How long a stopped process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Settings the lab passes on: the agents' `SHIBAFU_ENCRYPT_ALL` (`--encrypt-all`), the
/// coordinators' `SHIBAFU_COMPACT_INTERVAL` (`--compact-interval`).
pub const PASSED_SETTINGS: [&str; 2] = ["SHIBAFU_ENCRYPT_ALL", "SHIBAFU_COMPACT_INTERVAL"];

/// The OpenTelemetry variables (`OTEL_*`) and [`PASSED_SETTINGS`] among `vars`: what the lab
/// passes from its own environment to every process it starts and to `exec`, so a whole lab
/// reports to one collector (and `SHIBAFU_ENCRYPT_ALL=1 shibafu-lab start node3` restarts one
/// agent encrypting everything).
pub fn passed_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter(|(k, _)| k.starts_with("OTEL_") || PASSED_SETTINGS.contains(&k.as_str()))
        .collect()
}

/// Starts `spec` detached (own session, stdin from /dev/null, output appended to its log) inside
/// its namespace, with `mark` (`KEY=VALUE`) in its environment.
pub fn spawn(spec: &ProcSpec, mark: &str) -> anyhow::Result<Child> {
    let ns = File::open(netns::path(&spec.netns))
        .with_context(|| format!("opening namespace {}", spec.netns))?;
    if let Some(dir) = spec.log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening log {}", spec.log.display()))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some((k, v)) = mark.split_once('=') {
        cmd.env(k, v);
    }
    cmd.envs(passed_env(std::env::vars()));
    let fd = ns.as_raw_fd();
    // SAFETY: only async-signal-safe syscalls (setns, setsid) between fork and exec; `ns` stays
    // open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} in {}", spec.program.display(), spec.netns))?;
    drop(ns);
    Ok(child)
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Is `pid` alive and running `program` (guards against a recycled pid)?
pub fn is_running(pid: u32, program: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    Path::new(std::ffi::OsStr::from_bytes(argv0)) == program
}

/// Sends `sig` to `pid`, ignoring a pid that is already gone.
pub fn signal(pid: u32, sig: i32) {
    let Ok(p) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) on a positive pid.
    unsafe {
        libc::kill(p, sig);
    }
}

/// Waits until none of `pids` is alive, up to `timeout`; true if they all exited.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops `pid` if it still runs `program`: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: u32, program: &Path, grace: Duration) {
    if !is_running(pid, program) {
        return;
    }
    signal(pid, libc::SIGTERM);
    if !wait_gone(&[pid], grace) {
        tracing::warn!(pid, program = %program.display(), "did not stop on SIGTERM; killing");
        signal(pid, libc::SIGKILL);
        wait_gone(&[pid], Duration::from_secs(2));
    }
}

/// Pids whose environment holds `mark` (`KEY=VALUE`), except this process and its ancestors.
pub fn pids_with_mark(mark: &str) -> Vec<u32> {
    let exempt = ancestors();
    netns::all_pids()
        .into_iter()
        .filter(|pid| !exempt.contains(pid))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == mark.as_bytes()))
        })
        .collect()
}

/// This process and every ancestor (never killed by a sweep).
pub fn ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    let mut pid = std::process::id();
    while pid > 1 {
        let Some(ppid) = parent_of(pid) else { break };
        out.push(ppid);
        pid = ppid;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to its end; fails with its exit status and stderr when it does not succeed.
pub fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is it installed? deploy/install-deps.sh)"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_opentelemetry_variables_and_shibafu_settings_are_passed_on() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.64.0.2:4318"),
            ("PATH", "/bin"),
            ("OTEL_SERVICE_NAME", "x"),
            ("XOTEL_Y", "z"),
            ("SHIBAFU_ENCRYPT_ALL", "1"),
            ("SHIBAFU_COMPACT_INTERVAL", "2"),
            ("SHIBAFU_GC_INTERVAL", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let passed = passed_env(vars.into_iter());
        assert_eq!(
            passed,
            [
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    "http://10.64.0.2:4318".to_string()
                ),
                ("OTEL_SERVICE_NAME".to_string(), "x".to_string()),
                ("SHIBAFU_ENCRYPT_ALL".to_string(), "1".to_string()),
                ("SHIBAFU_COMPACT_INTERVAL".to_string(), "2".to_string()),
            ]
        );
    }

    #[test]
    fn marked_processes_are_found_checked_and_stopped() {
        let mark = format!("SHIBAFU_LAB_MARK=unit{}", std::process::id());
        let mut child = Command::new("sleep")
            .arg("30")
            .env(
                "SHIBAFU_LAB_MARK",
                mark.split_once('=').map_or("", |(_, v)| v),
            )
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let found = {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let pids = pids_with_mark(&mark);
                if pids.contains(&pid) || Instant::now() > deadline {
                    break pids;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        assert_eq!(found, [pid]);
        assert!(alive(pid));
        assert!(
            !is_running(pid, Path::new("/bin/not-sleep")),
            "argv0 must match"
        );
        assert!(is_running(pid, Path::new("sleep")));
        stop(pid, Path::new("sleep"), Duration::from_secs(5));
        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert!(ancestors().contains(&std::process::id()));
    }
}
