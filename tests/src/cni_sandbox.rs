//! [`ProcSandbox`]: a network namespace held by nothing but a process, as a runtime that passes
//! `/proc/PID/ns/net` as CNI_NETNS makes one: `unshare -n sleep 300` started inside a lab
//! node's namespace, killed and reaped on drop (also while a failing test unwinds).

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cni_conf::node_netns;
use crate::{exec_ok, wait_until, Lab};

/// A sleeping process in a network namespace of its own; killed when dropped.
#[derive(Debug)]
pub struct ProcSandbox {
    child: Option<Child>,
    pid: u32,
}

/// The inode of a namespace file (what tells namespaces apart), 0 when it cannot be read.
fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

impl ProcSandbox {
    /// Starts `unshare -n sleep 300` in NODE's namespace of `lab` (`ip netns exec` keeps the
    /// PID namespace, so the pid is the host's) and waits until it sleeps in its own namespace.
    pub fn start(lab: &Lab, node: &str) -> ProcSandbox {
        let ns = node_netns(lab, node);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "unshare", "-n", "sleep", "300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let sandbox = ProcSandbox {
            pid: child.id(),
            child: Some(child),
        };
        // `ip netns exec` execs `unshare`, which unshares and execs `sleep` in the same pid.
        let node_ino = ns_inode(&format!("/run/netns/{ns}"));
        let comm = format!("/proc/{}/comm", sandbox.pid);
        let ready = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let ino = ns_inode(&sandbox.netns());
            std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
                && ino != 0
                && ino != node_ino
        });
        assert!(
            ready,
            "{cmd:?} did not end up sleeping in a namespace of its own"
        );
        sandbox
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its namespace file, `/proc/PID/ns/net` (the CNI_NETNS to give).
    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    /// Runs `ip ARGS...` in its network namespace (`nsenter -t PID -n`); must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let pid = self.pid.to_string();
        exec_ok(
            Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip"])
                .args(args),
        )
    }

    /// Kills and reaps the process now (again: nothing).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcSandbox {
    fn drop(&mut self) {
        self.kill();
    }
}
