//! [`NftFirewall`]: applies rendered rulesets with `nft -f -`, in the current network namespace or
//! in another one, and re-applies the last one when it went missing; it also runs the policy
//! table's scripts and reads its counters ([`PolicyBackend`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use async_trait::async_trait;
use tracing::{debug, info, warn};

use super::session::{fits, NftSession, SessionError};
use super::{change_elements, ElementChange};
use super::{
    conditional_comments, guard_comments, render_guard_change, render_removal, render_ruleset,
    rule_comments, Firewall, FirewallError, FirewallSpec, GUARD_TABLE, TABLE,
};
use crate::netns;
use crate::policy::{parse_counters, PolicyBackend, POLICY_TABLE};

/// The real firewall: runs `nft`.
#[derive(Debug)]
pub struct NftFirewall {
    netns: Option<PathBuf>,
    program: PathBuf,
    last: Mutex<Option<FirewallSpec>>,
    /// The `nft -i` that small policy changes go through, started on first use.
    session: tokio::sync::Mutex<Option<NftSession>>,
}

/// Output of one nft run.
struct NftOutput {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

fn run_nft(
    program: &Path,
    args: &[String],
    stdin: Option<&str>,
) -> Result<NftOutput, FirewallError> {
    let spawn_err = |source| FirewallError::Spawn {
        program: program.to_path_buf(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(NftOutput {
        ok: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

impl NftFirewall {
    /// Works on the caller's network namespace (the agent's case).
    pub fn current() -> NftFirewall {
        NftFirewall {
            netns: None,
            program: PathBuf::from("nft"),
            last: Mutex::new(None),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Works on the network namespace at `path` (tests, labs).
    pub fn in_netns(path: impl Into<PathBuf>) -> NftFirewall {
        NftFirewall {
            netns: Some(path.into()),
            ..NftFirewall::current()
        }
    }

    /// Uses `program` instead of `nft` from PATH.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> NftFirewall {
        self.program = program.into();
        self
    }

    /// The spec last applied successfully.
    pub fn last_applied(&self) -> Option<FirewallSpec> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks `spec`'s ruleset with `nft -c` (parsed and validated by the kernel, not committed).
    pub async fn check(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
        let out = self
            .nft(&["-c", "-f", "-"], Some(render_ruleset(spec)))
            .await?;
        expect_ok("check", out)
    }

    async fn nft(&self, args: &[&str], stdin: Option<String>) -> Result<NftOutput, FirewallError> {
        let program = self.program.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let netns = self.netns.clone();
        let job = move || {
            match &netns {
                // A child inherits the namespace of the thread that spawns it.
                Some(p) => netns::run_in(p, move || run_nft(&program, &args, stdin.as_deref()))?,
                None => run_nft(&program, &args, stdin.as_deref()),
            }
        };
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| FirewallError::Task(e.to_string()))?
    }

    /// When `spec` differs from the last one applied only in its container ports (an attach, a
    /// detach), changes the source guard's elements through the session instead of reloading
    /// both tables with a new `nft`; false when that does not apply or did not work (then the
    /// whole ruleset is loaded).
    async fn change_ports(&self, spec: &FirewallSpec) -> bool {
        let script = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match last.as_ref() {
                Some(last) if last.same_but_ports(spec) => {
                    render_guard_change(&last.ports, &spec.ports)
                }
                _ => None,
            }
        };
        let Some(script) = script else {
            return false;
        };
        match self.in_session(&script).await {
            Ok(()) => {
                debug!(ports = spec.ports.len(), "source guard elements changed");
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec.clone());
                true
            }
            Err(e) => {
                warn!(error = ?e, "changing the source guard's elements failed; loading the whole ruleset");
                false
            }
        }
    }

    /// Runs `script` in the session, starting one if there is none; a broken session goes.
    async fn in_session(&self, script: &str) -> Result<(), SessionError> {
        let warnings = self.session_output(script).await?;
        if !warnings.is_empty() {
            warn!(%warnings, "nft warned about a table change");
        }
        Ok(())
    }

    /// Runs `script` in the session and returns what nft printed (a listing, warnings).
    async fn session_output(&self, script: &str) -> Result<String, SessionError> {
        let mut held = self.session.lock().await;
        if held.as_ref().is_some_and(NftSession::worn) {
            *held = None;
        }
        let session = match held.as_mut() {
            Some(s) => s,
            None => held.insert(NftSession::start(&self.program, self.netns.as_deref()).await?),
        };
        let out = session.run(script).await;
        if matches!(out, Err(SessionError::Broken(_))) {
            *held = None;
        }
        out
    }

    /// The listing of table `family name` through the session (checks after every change of
    /// the tables start no process), else from `nft list`; `None` when the table is not there.
    async fn listing(&self, family: &str, name: &str) -> Result<Option<String>, FirewallError> {
        match self
            .session_output(&format!("list table {family} {name}"))
            .await
        {
            Ok(out) => return Ok(Some(out)),
            Err(SessionError::Rejected(_)) => return Ok(None),
            Err(SessionError::Broken(why)) => warn!(%why, "nft session failed; listing with nft"),
        }
        let out = self
            .nft(&["-t", "list", "table", family, name], None)
            .await?;
        Ok(out.ok.then_some(out.stdout))
    }
}

fn expect_ok(action: &str, out: NftOutput) -> Result<(), FirewallError> {
    if out.ok {
        Ok(())
    } else {
        Err(FirewallError::Nft {
            action: action.to_string(),
            status: out.status,
            stderr: out.stderr,
        })
    }
}

#[async_trait]
impl Firewall for NftFirewall {
    async fn apply(&self, spec: &FirewallSpec) -> Result<(), FirewallError> {
        if self.change_ports(spec).await {
            return Ok(());
        }
        let out = self.nft(&["-f", "-"], Some(render_ruleset(spec))).await?;
        expect_ok("apply", out)?;
        info!(
            networks = spec.networks.len(),
            links = spec.links.len(),
            ports = spec.ports.len(),
            "firewall ruleset applied"
        );
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec.clone());
        Ok(())
    }

    async fn remove(&self) -> Result<(), FirewallError> {
        let out = self.nft(&["-f", "-"], Some(render_removal())).await?;
        expect_ok("remove", out)?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    async fn ensure(&self) -> Result<bool, FirewallError> {
        let Some(spec) = self.last_applied() else {
            return Ok(false);
        };
        // Quoted, so a comment that is a prefix of another ("..." vs "... (v6)") is not found
        // inside it.
        let mut intact = true;
        for (table, mut expected) in [(TABLE, rule_comments()), (GUARD_TABLE, guard_comments())] {
            if table == TABLE {
                expected.extend(conditional_comments(&spec));
            }
            let (family, name) = table.split_once(' ').unwrap_or(("inet", table));
            let listing = self.listing(family, name).await?;
            intact &= listing
                .is_some_and(|out| expected.iter().all(|c| out.contains(&format!("\"{c}\""))));
        }
        if intact {
            return Ok(false);
        }
        warn!("shibafu nftables table missing or altered; re-applying the last ruleset");
        self.apply(&spec).await?;
        Ok(true)
    }
}

#[async_trait]
impl PolicyBackend for NftFirewall {
    /// A small change goes through the long-lived `nft -i`; a whole table, or any script when
    /// the session broke, through `nft -f`.
    async fn run(&self, script: String) -> Result<(), FirewallError> {
        if fits(&script) {
            match self.in_session(&script).await {
                Ok(()) => return Ok(()),
                Err(SessionError::Rejected(stderr)) => {
                    return Err(FirewallError::Nft {
                        action: "policy table change".into(),
                        status: "refused".into(),
                        stderr,
                    })
                }
                Err(SessionError::Broken(why)) => {
                    warn!(%why, "nft session failed; running nft -f instead")
                }
            }
        }
        let out = self.nft(&["-f", "-"], Some(script)).await?;
        expect_ok("policy table change", out)
    }

    async fn elements(&self, changes: &[ElementChange]) -> Result<(), FirewallError> {
        let name = POLICY_TABLE
            .split_once(' ')
            .map_or(POLICY_TABLE, |(_, n)| n);
        change_elements(self.netns.as_deref(), name, changes).await
    }

    async fn counters(&self) -> Result<Option<BTreeMap<String, u64>>, FirewallError> {
        let (family, name) = POLICY_TABLE
            .split_once(' ')
            .unwrap_or(("inet", POLICY_TABLE));
        let out = self
            .nft(&["-j", "list", "counters", "table", family, name], None)
            .await?;
        if !out.ok && out.stderr.contains("No such file or directory") {
            return Ok(None);
        }
        let stdout = out.stdout.clone();
        expect_ok("list policy counters", out)?;
        parse_counters(&stdout)
            .map(Some)
            .map_err(|e| FirewallError::Nft {
                action: "list policy counters".into(),
                status: "unreadable JSON".into(),
                stderr: e,
            })
    }
}
