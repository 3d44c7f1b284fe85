//! A long-lived `nft -i` for the policy table's small changes.
//!
//! Every `nft -f` pays for a process, a fresh cache of the whole ruleset and, when it closes its
//! netlink socket after a commit, the kernel's wait for the transaction's memory to be released
//! (an RCU grace period): about two thirds of a rule change at scale. One interactive nft kept
//! open pays none of the last two twice. Each script goes in as one line (one transaction, all
//! or nothing), followed by a word nft cannot parse: its syntax error, which echoes the word,
//! marks the end of the script's own output.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use crate::netns;

/// The longest script a session takes; longer ones (whole tables) go to `nft -f`.
pub const SESSION_MAX_SCRIPT: usize = 256 * 1024;
/// How long a script may take before the session is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most output one script may produce (an error echoes the script once).
const MAX_REPLY: usize = SESSION_MAX_SCRIPT * 4;
/// nft keeps every line in its in-memory history, and libedit walks that history for each new
/// line (to skip a repeat of the last one): a session is replaced after this many scripts (each
/// is two lines) or this much input, so a line costs the same after 10 or 10,000 changes.
const MAX_SESSION_SCRIPTS: u64 = 256;
const MAX_SESSION_INPUT: usize = 4 << 20;
/// Where nft would read and write its history file: nowhere.
const NO_HOME: &str = "/nonexistent";

/// Why a script did not go through a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// nft refused the script (nothing of it was applied); its error output.
    Rejected(String),
    /// The session itself failed (could not start, died, timed out): run the script elsewhere.
    Broken(String),
}

/// Can `script` go through a session? One line per command, no comments, not too long.
pub fn fits(script: &str) -> bool {
    script.len() <= SESSION_MAX_SCRIPT && !script.contains('#')
}

/// The one line a script is sent as.
fn one_line(script: &str) -> String {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the reply to a script from everything nft wrote since: `None` until the end marker's
/// error (`...`, the `marker` line, the caret line) is complete, then the script's own output:
/// `Err` when it holds an error.
pub fn parse_reply(out: &str, marker: &str) -> Option<Result<String, String>> {
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    let at = lines.iter().position(|l| l.trim_end() == marker)?;
    // The caret line under the marker must be complete too.
    if !lines.get(at + 1).is_some_and(|l| l.ends_with('\n')) {
        return None;
    }
    let own = lines[..at.saturating_sub(1)].concat().trim().to_string();
    Some(if own.contains("Error") {
        Err(own)
    } else {
        Ok(own)
    })
}

/// Has a session that took `scripts` scripts of `bytes` bytes in all grown a history that makes
/// each line cost more than in a new one?
fn worn(scripts: u64, bytes: usize) -> bool {
    scripts >= MAX_SESSION_SCRIPTS || bytes > MAX_SESSION_INPUT
}

/// An `nft -i` process and the pipes to it.
#[derive(Debug)]
pub struct NftSession {
    child: Child,
    input: pipe::Sender,
    output: pipe::Receiver,
    sent: u64,
    bytes: usize,
}

impl NftSession {
    /// Starts `program -t -i` (terse: listings without set elements) in the network namespace at
    /// `netns` (None = the caller's).
    pub async fn start(program: &Path, netns: Option<&Path>) -> Result<NftSession, SessionError> {
        let broken = |what: &str, e: &dyn std::fmt::Display| {
            SessionError::Broken(format!("{what} {}: {e}", program.display()))
        };
        let (tx, output) = pipe::pipe().map_err(|e| broken("pipe for", &e))?;
        let out: OwnedFd = tx.into_blocking_fd().map_err(|e| broken("pipe for", &e))?;
        let err = out.try_clone().map_err(|e| broken("pipe for", &e))?;
        let prog = program.to_path_buf();
        let spawn = move || {
            // Terse: listings (the table check's) leave out set elements, so checking the
            // table costs the same with 10 or 1,000 container ports in the guard's sets.
            Command::new(&prog)
                .args(["-t", "-i"])
                .env("HOME", NO_HOME)
                .stdin(Stdio::piped())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
        };
        let spawned = match netns {
            // A child inherits the namespace of the thread that spawns it.
            Some(p) => netns::run_in_async(p, spawn)
                .await
                .map_err(|e| broken("starting", &e))?,
            None => spawn(),
        };
        let mut child = spawned.map_err(|e| broken("starting", &e))?;
        let Some(stdin) = child.stdin.take() else {
            let _ = child.kill();
            return Err(broken("starting", &"no stdin"));
        };
        let input = pipe::Sender::from_owned_fd(OwnedFd::from(stdin))
            .map_err(|e| broken("stdin of", &e))?;
        Ok(NftSession {
            child,
            input,
            output,
            sent: 0,
            bytes: 0,
        })
    }

    /// Runs `script` as one transaction; returns what nft printed besides errors (warnings).
    pub async fn run(&mut self, script: &str) -> Result<String, SessionError> {
        self.sent += 1;
        let marker = format!("sfend{}", self.sent);
        let text = format!("{}\n{marker}\n", one_line(script));
        self.bytes += text.len();
        let exchange = async {
            self.input.write_all(text.as_bytes()).await?;
            let mut got = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = self.output.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("nft exited"));
                }
                got.extend_from_slice(&chunk[..n]);
                if let Some(reply) = parse_reply(&String::from_utf8_lossy(&got), &marker) {
                    return Ok(reply);
                }
                if got.len() > MAX_REPLY {
                    return Err(std::io::Error::other("reply too long"));
                }
            }
        };
        match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply.map_err(SessionError::Rejected),
            Ok(Err(e)) => Err(SessionError::Broken(format!("nft -i: {e}"))),
            Err(_) => Err(SessionError::Broken(format!(
                "nft -i did not answer within {REPLY_TIMEOUT:?}"
            ))),
        }
    }

    /// Has this session taken so much input that its history should be let go?
    pub fn worn(&self) -> bool {
        worn(self.sent, self.bytes)
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: &str =
        "Error: syntax error, unexpected newline, expecting string\nsfend3\n      ^\n";

    #[test]
    fn a_script_becomes_one_line_of_commands() {
        assert_eq!(
            one_line("add counter inet t c\n\n  flush chain inet t x\n"),
            "add counter inet t c; flush chain inet t x"
        );
        assert!(fits("add rule inet t c drop\n"));
        assert!(!fits("# netlink\n"));
        assert!(!fits(&"x".repeat(SESSION_MAX_SCRIPT + 1)));
    }

    #[test]
    fn a_session_is_worn_after_many_scripts_or_much_input() {
        assert!(!worn(0, 0));
        assert!(!worn(MAX_SESSION_SCRIPTS - 1, 1000));
        assert!(worn(MAX_SESSION_SCRIPTS, 1000), "libedit's history walk");
        assert!(worn(3, MAX_SESSION_INPUT + 1), "a few long scripts");
    }

    #[test]
    fn the_reply_ends_with_the_marker_and_its_caret_line() {
        assert_eq!(parse_reply("", "sfend3"), None);
        assert_eq!(
            parse_reply(
                "Error: syntax error, unexpected newline\nsfend3\n",
                "sfend3"
            ),
            None,
            "the caret line is still coming"
        );
        assert_eq!(parse_reply(END, "sfend3"), Some(Ok(String::new())));
        assert_eq!(parse_reply(END, "sfend4"), None, "an older marker");
    }

    #[test]
    fn an_error_before_the_marker_is_the_script_s() {
        let out = format!(
            "Error: Could not process rule: No such file or directory\n\
             add rule inet t nochain drop\n                ^^^^^^^\n{END}"
        );
        let err = parse_reply(&out, "sfend3")
            .expect("complete")
            .expect_err("rejected");
        assert!(err.starts_with("Error: Could not process rule"), "{err}");
        assert!(err.ends_with("^^^^^^^"), "{err}");
    }
}
