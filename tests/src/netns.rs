//! [`NetnsGuard`]: a uniquely named network namespace for one test, deleted with every process
//! inside it when the guard drops (also while a failing test unwinds).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{exec_ok, exec_out, unique_name, wait_until};

/// A network namespace owned by a test (`sft-<tag>-<pid>x<n>`), with `lo` up.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates a namespace named after `tag` (keep it short: letters and digits).
    pub fn new(tag: &str) -> NetnsGuard {
        let name = format!("sft-{}", unique_name(&format!("{tag}-")));
        exec_ok(Command::new("ip").args(["netns", "add", &name]));
        let guard = NetnsGuard { name };
        exec_ok(Command::new("ip").args(["-n", &guard.name, "link", "set", "lo", "up"]));
        guard
    }

    /// The namespace name (for `ip -n`, `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, `/run/netns/<name>` (for `--netns PATH` style flags).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command running `program` inside the namespace (`ip netns exec`).
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `ip -n <ns> ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        exec_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Pids of the processes in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        let out = exec_out(Command::new("ip").args(["netns", "pids", &self.name]));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
                self.pids().is_empty()
            });
        }
        let out = exec_out(Command::new("ip").args(["netns", "del", &self.name]));
        if !out.status.success() {
            eprintln!(
                "NetnsGuard: deleting {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Names of existing namespaces starting with `prefix` (leak checks).
pub fn namespace_names(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
