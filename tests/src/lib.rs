//! Shared harness for the host and lab tiers: namespace and lab guards that clean up even when
//! a test panics, binary lookup, command helpers with readable failures, and polling.
//!
//! Host-tier tests make their own namespaces with [`NetnsGuard`]; lab-tier tests start a whole
//! lab with [`Lab`]. Both are removed on drop. Names carry the test process id and a counter, so
//! tests run in parallel and a crashed run's leftovers are recognisable (`sft-*`, `sf-t*`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Directory holding the workspace binaries: `SHIBAFU_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`,
/// else the workspace's `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHIBAFU_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("debug");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

/// Path of a workspace binary (`shibafu`, `shibafu-agent`, `shibafu-lab`, ...); panics with
/// what to do when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (or set SHIBAFU_BIN_DIR)",
        p.display()
    );
    p
}

/// A name unique to this test process and call: `<tag><pid>x<n>` (lowercase letters and digits).
pub fn unique_name(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Command output as text (lossy UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Describes a finished command for failure messages: command line, status, stdout, stderr.
pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "{cmd:?}\n  status: {}\n  stdout: {}\n  stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// Runs a command to completion and returns its output (panics only if it cannot start).
pub fn exec_out(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout. On failure panics showing the
/// command, its status, stdout and stderr.
pub fn exec_ok(cmd: &mut Command) -> String {
    let out = exec_out(cmd);
    assert!(
        out.status.success(),
        "command failed: {}",
        describe(cmd, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr. Panics if it succeeds.
pub fn exec_fails(cmd: &mut Command) -> String {
    let out = exec_out(cmd);
    assert!(
        !out.status.success(),
        "command should have failed: {}",
        describe(cmd, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `cond` every `poll` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Whether this process can make namespaces (root); tiers that need it skip loudly otherwise.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Is this process root? When not, says on stderr that the `tier` tier's test is skipped.
pub fn root_or_skip(tier: &str) -> bool {
    if !is_root() {
        eprintln!("skipped: the {tier} tier needs root");
    }
    is_root()
}

pub mod burst;
pub mod cni;
pub mod cni_call;
pub mod cni_conf;
pub mod cni_lab;
pub mod cni_sandbox;
pub mod fake_agent;
pub mod firewall;
mod lab;
mod netns;
pub mod otlp;
pub mod plan;
pub mod probe;
pub mod prometheus;
pub mod shim;
pub mod sim;
pub mod spoof;

pub use lab::Lab;
pub use netns::{namespace_names, NetnsGuard};
pub use otlp::{OtlpReceiver, ReceivedSpan};

/// xorshift64*: a small seeded generator, so a randomized test replays from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// An element of `v`.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}
