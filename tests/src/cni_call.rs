//! One CNI plugin call: [`invoke`] runs a plugin binary with exactly the given environment and
//! stdin inside a namespace, killing it after [`CALL_TIMEOUT`]; [`CniCall`] is what it did,
//! with the assertions a test makes on the outcome (success, a spec error code, no panic).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::unique_name;

/// How long one plugin call may take before it is killed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one plugin call did.
#[derive(Debug, Clone)]
pub struct CniCall {
    /// The plugin binary that ran.
    pub plugin: PathBuf,
    /// What ran: plugin, namespace, environment and stdin (for failure messages).
    pub invocation: String,
    /// Exit status (`None` when it was killed after [`CALL_TIMEOUT`]).
    pub status: Option<ExitStatus>,
    /// Stdout as text.
    pub stdout: String,
    /// Stdout parsed as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// Stderr as text.
    pub stderr: String,
}

impl CniCall {
    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The error code of an error result (`"code"` of stdout's JSON).
    pub fn code(&self) -> Option<u64> {
        self.json["code"].as_u64()
    }

    /// Everything about the call, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "{}\n  status: {:?}\n  stdout: {}\n  stderr: {}",
            self.invocation,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics (showing the call) unless it exited 0 without a panic; returns its JSON.
    pub fn expect_ok(&self, what: &str) -> &Value {
        assert!(self.ok(), "{what} should succeed: {}", self.show());
        self.expect_no_panic(what);
        &self.json
    }

    /// Panics unless the call failed the CNI way: non-zero exit, an error JSON with `code`
    /// `code`, a `msg` and `cniVersion`, no panic or backtrace on stderr.
    pub fn expect_error(&self, code: u64, what: &str) {
        let shape = self.status.is_some()
            && !self.ok()
            && self.code() == Some(code)
            && self.json["msg"].as_str().is_some_and(|m| !m.is_empty())
            && self.json["cniVersion"].is_string();
        assert!(shape, "{what}: expected error code {code}: {}", self.show());
        self.expect_no_panic(what);
    }

    /// Panics when stdout or stderr shows a Rust panic or backtrace.
    pub fn expect_no_panic(&self, what: &str) {
        let panicked = [&self.stderr, &self.stdout]
            .iter()
            .any(|t| t.contains("panicked") || t.contains("RUST_BACKTRACE"));
        assert!(!panicked, "{what}: the plugin panicked: {}", self.show());
    }
}

/// Runs `plugin` with exactly the CNI variables `env` (the test's own CNI_* are dropped) and
/// `stdin`, inside the namespace `netns` (`ip netns exec`, as a runtime on that host would),
/// killing it after [`CALL_TIMEOUT`].
pub fn invoke(netns: &str, plugin: &Path, env: &[(String, String)], stdin: &[u8]) -> CniCall {
    let base = std::env::temp_dir().join(unique_name("sf-cnicall"));
    let file = |ext: &str| base.with_extension(ext);
    std::fs::write(file("in"), stdin).expect("write plugin stdin");
    // An absolute `ip`: `env` may change PATH, which the lookup of the program would use.
    let ip = ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let mut cmd = Command::new(ip.unwrap_or("ip"));
    cmd.args(["netns", "exec", netns]).arg(plugin);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CNI_")) {
        cmd.env_remove(k);
    }
    let open = |ext: &str| File::create(file(ext)).expect("create plugin output file");
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(File::open(file("in")).expect("open plugin stdin"))
        .stdout(open("out"))
        .stderr(open("err"));
    let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let invocation = format!(
        "{} in {netns}\n  env: {}\n  stdin: {}",
        plugin.display(),
        env_text.join(" "),
        String::from_utf8_lossy(stdin)
    );
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let read = |ext: &str| {
        let t = String::from_utf8_lossy(&std::fs::read(file(ext)).unwrap_or_default()).into();
        let _ = std::fs::remove_file(file(ext));
        t
    };
    let (stdout, stderr): (String, String) = (read("out"), read("err"));
    let _ = std::fs::remove_file(file("in"));
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    CniCall {
        plugin: plugin.to_path_buf(),
        invocation,
        status,
        stdout,
        json,
        stderr,
    }
}
